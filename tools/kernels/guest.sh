#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Runs inside a tools/vmtest guest (busybox sh), started by run.sh: each
# test binary once per attach path.
#
#	/guest.sh [BACKEND...]       (default: fentry kprobe sockops auto)
#
# Environment (set by run.sh):
#	KERNELS_TESTS        NAME:PKGDIR pairs: /NAME.test runs in /src/PKGDIR, as
#	                     `go test` runs a test binary in its package's folder
#	KERNELS_EXPECT_AUTO  what --backend auto must choose (default fentry)
#	KERNELS_RUN, KERNELS_SKIP  extra -test.run / -test.skip patterns
#	KERNELS_TIMING_SLACK  slack for the tests' timing checks (default 150ms)
#
# Prints a "=== KERNELS:" header per (kernel, backend, binary), a
# "KERNELS-RESULT" line after each run, and a summary; exits 1 if any run
# failed.

backends=${*:-fentry kprobe sockops auto}
tests=${KERNELS_TESTS:-tracer:internal/tracer cmd:cmd/tcpconnect}
expect_auto=${KERNELS_EXPECT_AUTO:-fentry}
kernel=$(uname -r)

# Privileged tests must run here, not skip; the end-to-end tests use the
# static binary (there is no Go toolchain in the guest).
export TCPCONNECT_REQUIRE_PRIVILEGED=1 TCPCONNECT_TEST_BINARY=/tcpconnect
# Timing checks (latency vs what the client measured) get this slack
# under TCG emulation; the host suite checks them to the millisecond.
export TCPCONNECT_TEST_TIMING_SLACK=${KERNELS_TIMING_SLACK:-150ms}

# Properties of the source tree, checked by the host suite, which has the
# tools they need: TestGeneratedUpToDate rebuilds the BPF objects with
# clang and go; TestManPage and TestCompletions run man, groff, mandoc and
# the shells on the generated documentation.
skip='^(TestGeneratedUpToDate|TestManPage|TestCompletions)$'
[ -n "${KERNELS_SKIP:-}" ] && skip="$skip|$KERNELS_SKIP"
run=${KERNELS_RUN:-.}

failed=0
summary=""
for b in $backends; do
	ea=""
	[ "$b" = auto ] && ea=$expect_auto
	for pair in $tests; do
		t=${pair%%:*}
		dir=/src/${pair#*:}
		echo
		echo "=== KERNELS: kernel $kernel, backend $b${ea:+ (must choose $ea)}, $t tests (in $dir)"
		start=$(date +%s)
		{
			cd "$dir" && env TCPCONNECT_TEST_BACKEND="$b" TCPCONNECT_TEST_EXPECT_AUTO="$ea" \
				"/$t.test" -test.v -test.count=1 -test.timeout=20m \
				-test.run="$run" -test.skip="$skip" 2>&1
			echo $? >/tmp/rc
		} | tee /tmp/out
		rc=$(cat /tmp/rc)
		secs=$(($(date +%s) - start))
		if [ "$rc" = 0 ]; then
			res=PASS
		else
			res=FAIL
			failed=1
		fi
		# Counts of tests and subtests; the names of the failed top-level
		# tests (their failed subtests are in the log above).
		npass=$(grep -cE '^ *--- PASS: ' /tmp/out)
		nskip=$(grep -cE '^ *--- SKIP: ' /tmp/out)
		nfail=$(grep -cE '^ *--- FAIL: ' /tmp/out)
		fails=$(grep -E '^--- FAIL: ' /tmp/out | sed -E 's/^--- FAIL: ([^ ]*).*/\1/' | tr '\n' ' ')
		# A crash or a test timeout prints no "--- FAIL" line.
		[ "$rc" != 0 ] && [ -z "$fails" ] && fails="(no --- FAIL line: crash or timeout? see the log) "
		line="KERNELS-RESULT kernel=$kernel backend=$b tests=$t result=$res exit=$rc seconds=$secs passed=$npass skipped=$nskip failed=$nfail${fails:+ failed: $fails}"
		echo "$line"
		summary="$summary$line
"
	done
done
echo
echo "=== KERNELS: summary for kernel $kernel"
printf '%s' "$summary"
exit $failed
