#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs the privileged test suite under other kernels (Debian's 6.1 and 6.12
# for amd64, and 6.12 for arm64, booted by tools/vmtest under QEMU/TCG),
# once per attach path.
#
#	tools/kernels/run.sh [KERNEL...]      (default: 6.1 6.12 6.12-arm64)
#
# Environment:
#	BACKENDS     attach paths to test (default: fentry kprobe sockops auto)
#	EXPECT_AUTO  what --backend auto must choose (default: fentry)
#	RUN, SKIP    -test.run / -test.skip patterns, for a quick partial run
#	TIMING_SLACK how far the tests' timing checks may be off under TCG
#	             (TCPCONNECT_TEST_TIMING_SLACK in the guest; default 150ms)
#	VM_TIMEOUT   limit per kernel for boot and all runs (default: 60m)
#	PARALLEL     1 (default): the kernels of another architecture run
#	             at the same time as the host's, each in its own QEMU (TCG
#	             with thread=single uses one core per guest); 0: one after
#	             the other
#
# One boot per kernel: tools/kernels/guest.sh runs the tracer tests and the
# end-to-end tests of the static binary for every backend in turn, each
# test binary in its package's folder of a copy of the tree. The test
# binaries and tcpconnect are built for each kernel's architecture
# (GOARCH). The host architecture's kernels print their console to the
# terminal; every kernel's console goes to .cache/kernels/KERNEL.log (a
# concurrent one is printed after the others). Exits non-zero if any run
# failed or a guest did not finish.
#
# Needs (no root): Go, qemu-system-x86, qemu-system-arm, busybox-static,
# xz-utils, zstd (tools/vmtest/README.md); for arm64, Debian's arm64
# packages (dpkg --add-architecture arm64 && apt-get update, as root).
# prometheus, if installed, is copied into the host architecture's guests
# for the test that scrapes the tool; an arm64 guest cannot run it, so
# that one test is skipped there.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12 6.12-arm64)
backends=${BACKENDS:-fentry kprobe sockops auto}
# NAME:PACKAGE: NAME.test is built from ./PACKAGE and runs in its folder.
tests="tracer:internal/tracer cmd:cmd/tcpconnect"
out=.cache/kernels
bin=$out/bin
src=$out/src
hostarch=$(go env GOARCH)

# arch KERNEL: the Go/Debian architecture of a kernel name of vmtest.
arch() {
	case $1 in
	*-arm64) echo arm64 ;;
	*) echo amd64 ;;
	esac
}

echo "== kernels: building static test binaries and tcpconnect"
rm -rf "$src"
mkdir -p "$bin" "$src"
archs=$(for k in "${kernels[@]}"; do arch "$k"; done | sort -u)
(
	set -e
	export CGO_ENABLED=0
	for a in $archs; do
		mkdir -p "$bin/$a"
		for pair in $tests; do
			GOARCH=$a go test -c -o "$bin/$a/${pair%%:*}.test" "./${pair#*:}"
		done
		GOARCH=$a go build -o "$bin/$a/tcpconnect" ./cmd/tcpconnect
	done
	go -C tools build -o "$PWD/$bin/vmtest" ./vmtest
	# The tree (tracked and new files, not ignored ones) for tests that
	# read files of their package or of the repository.
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$src"
) || { echo "kernels: build failed"; exit 1; }

# run_kernel KERNEL: boots it and runs guest.sh; writes the exit status
# and the seconds taken to $out/KERNEL.rc.
run_kernel() {
	local k=$1 a log start rc skip extra=()
	a=$(arch "$k")
	log=$out/$k.log
	skip=${SKIP:-}
	if [ "$a" = "$hostarch" ]; then
		if command -v prometheus >/dev/null; then
			extra+=(-hostbin prometheus)
		fi
	else
		skip="^TestPrometheusScrapesTool\$${skip:+|$skip}"
	fi
	start=$(date +%s)
	"$bin/vmtest" -kernel "$k" -timeout "${VM_TIMEOUT:-60m}" \
		-file "$src:/src" -file tools/kernels/guest.sh -file "$bin/$a/tcpconnect" \
		$(for pair in $tests; do printf -- '-file %s ' "$bin/$a/${pair%%:*}.test"; done) \
		"${extra[@]}" \
		-env "KERNELS_TESTS=$tests" -env "KERNELS_EXPECT_AUTO=${EXPECT_AUTO:-fentry}" \
		-env "KERNELS_RUN=${RUN:-}" -env "KERNELS_SKIP=$skip" \
		-env "KERNELS_TIMING_SLACK=${TIMING_SLACK:-}" \
		-- /guest.sh $backends >"$log" 2>&1
	rc=$?
	echo "$rc $(($(date +%s) - start))" >"$out/$k.rc"
}

status=0
report=()
total_start=$(date +%s)
background=()
for k in "${kernels[@]}"; do
	rm -f "$out/$k.rc"
	if [ "${PARALLEL:-1}" = 1 ] && [ "$(arch "$k")" != "$hostarch" ]; then
		echo "== kernels: kernel $k ($(arch "$k")), backends: $backends, in the background (log: $out/$k.log)"
		run_kernel "$k" &
		background+=("$k")
	fi
done
for k in "${kernels[@]}"; do
	case " ${background[*]} " in *" $k "*) continue ;; esac
	echo "== kernels: kernel $k ($(arch "$k")), backends: $backends (log: $out/$k.log)"
	: >"$out/$k.log"
	tail -n +1 -f "$out/$k.log" &
	tailpid=$!
	run_kernel "$k"
	sleep 0.5
	kill "$tailpid" 2>/dev/null
	wait "$tailpid" 2>/dev/null
done
if [ ${#background[@]} -gt 0 ]; then
	echo "== kernels: waiting for ${background[*]}"
	wait
	for k in "${background[@]}"; do
		echo "== kernels: console of kernel $k"
		cat "$out/$k.log"
	done
fi

for k in "${kernels[@]}"; do
	log=$out/$k.log
	read -r rc secs <"$out/$k.rc" 2>/dev/null || { rc=none secs=?; }
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
