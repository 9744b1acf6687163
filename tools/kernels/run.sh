#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs the privileged test suite under other kernels (Debian's 6.1 and 6.12,
# booted by tools/vmtest under QEMU/TCG), once per attach path.
#
#	tools/kernels/run.sh [KERNEL...]      (default: 6.1 6.12)
#
# Environment:
#	BACKENDS     attach paths to test (default: fentry kprobe sockops auto)
#	EXPECT_AUTO  what --backend auto must choose (default: fentry)
#	RUN, SKIP    -test.run / -test.skip patterns, for a quick partial run
#	TIMING_SLACK how far the tests' timing checks may be off under TCG
#	             (TCPCONNECT_TEST_TIMING_SLACK in the guest; default 150ms)
#	VM_TIMEOUT   limit per kernel for boot and all runs (default: 60m)
#
# One boot per kernel: tools/kernels/guest.sh runs the tracer tests and the
# end-to-end tests of the static binary for every backend in turn, each
# test binary in its package's folder of a copy of the tree. Every
# kernel's console goes to the terminal and to .cache/kernels/KERNEL.log.
# Exits non-zero if any run failed or a guest did not finish.
#
# Needs (no root): Go, qemu-system-x86, busybox-static, xz-utils, zstd
# (tools/vmtest/README.md); prometheus, if installed, is copied into the
# guest for the test that scrapes the tool.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
backends=${BACKENDS:-fentry kprobe sockops auto}
# NAME:PACKAGE: NAME.test is built from ./PACKAGE and runs in its folder.
tests="tracer:internal/tracer cmd:cmd/tcpconnect"
out=.cache/kernels
bin=$out/bin
src=$out/src

echo "== kernels: building static test binaries and tcpconnect"
rm -rf "$src"
mkdir -p "$bin" "$src"
(
	set -e
	export CGO_ENABLED=0
	for pair in $tests; do
		go test -c -o "$bin/${pair%%:*}.test" "./${pair#*:}"
	done
	go build -o "$bin/tcpconnect" ./cmd/tcpconnect
	go -C tools build -o "$PWD/$bin/vmtest" ./vmtest
	# The tree (tracked and new files, not ignored ones) for tests that
	# read files of their package or of the repository.
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$src"
) || { echo "kernels: build failed"; exit 1; }

extra=()
if command -v prometheus >/dev/null; then
	extra+=(-hostbin prometheus)
fi

status=0
report=()
total_start=$(date +%s)
for k in "${kernels[@]}"; do
	log=$out/$k.log
	echo "== kernels: kernel $k, backends: $backends (log: $log)"
	start=$(date +%s)
	"$bin/vmtest" -kernel "$k" -timeout "${VM_TIMEOUT:-60m}" \
		-file "$src:/src" -file tools/kernels/guest.sh -file "$bin/tcpconnect" \
		$(for pair in $tests; do printf -- '-file %s ' "$bin/${pair%%:*}.test"; done) \
		"${extra[@]}" \
		-env "KERNELS_TESTS=$tests" -env "KERNELS_EXPECT_AUTO=${EXPECT_AUTO:-fentry}" \
		-env "KERNELS_RUN=${RUN:-}" -env "KERNELS_SKIP=${SKIP:-}" \
		-env "KERNELS_TIMING_SLACK=${TIMING_SLACK:-}" \
		-- /guest.sh $backends 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	secs=$(($(date +%s) - start))
	[ "$rc" = 0 ] || status=1
	# Every (backend, binary) asked for must have reported.
	for b in $backends; do
		for pair in $tests; do
			t=${pair%%:*}
			r=$(grep -E "^KERNELS-RESULT .* backend=$b tests=$t " "$log" | tail -1)
			if [ -z "$r" ]; then
				r="backend=$b tests=$t result=NOT-RUN (the guest did not get there; vmtest exit $rc)"
				status=1
			fi
			report+=("$k: ${r#KERNELS-RESULT }")
		done
	done
	report+=("$k: vmtest exit $rc after ${secs}s (boot, all runs, power-off)")
done

echo
echo "== kernels: summary ($(($(date +%s) - total_start))s in all)"
printf '%s\n' "${report[@]}"
if [ "$status" != 0 ]; then
	echo "== kernels: FAILED"
else
	echo "== kernels: all passed"
fi
exit $status
