#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Measures what tcpconnect costs processes that never connect (getppid()
# time, round trips of one established connection) inside Debian's 6.1 and
# 6.12 kernels under QEMU, where the fentry and kprobe backends work.
# Ratios only: absolute times under TCG mean nothing.
#
#	tools/kernels/bystander.sh [KERNEL...]      (default: 6.1 6.12)
#
# Environment:
#	BACKENDS  backends (default: fentry,kprobe)
#	CONFIGS   tcpconnect modes (default: table,json,count,metrics,results)
#	ROUNDS, D rounds and getppid() time per sample (default: 5, 1s)
#	BEFORE    a git revision to build as a second binary, measured in
#	          table mode as config "before" (e.g. the main branch)
#
# Lines "BYSTANDER backend=… config=… getppid_ratio=… rr_ratio=…" are the
# results (medians over rounds; what the bystander keeps, 1 = no cost).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
out=.cache/kernels/bystander
mkdir -p "$out"
export CGO_ENABLED=0
go build -o "$out/vmbystander" ./bench/bystander/vmbystander
go build -o "$out/tcpconnect" ./cmd/tcpconnect
go build -o "$out/vmtest" ./tools/vmtest
files=(-file "$out/vmbystander" -file "$out/tcpconnect")
args=(-tool /tcpconnect -backends "${BACKENDS:-fentry,kprobe}" -configs "${CONFIGS:-table,json,count,metrics,results}"
	-rounds "${ROUNDS:-5}" -d "${D:-1s}")
if [ -n "${BEFORE:-}" ]; then
	src=$(mktemp -d)
	trap 'rm -rf "$src"' EXIT
	git archive "$BEFORE" | tar -x -C "$src"
	(cd "$src" && go build -o "$OLDPWD/$out/tcpconnect-before" ./cmd/tcpconnect)
	files+=(-file "$out/tcpconnect-before")
	args+=(-before /tcpconnect-before)
fi
status=0
for k in "${kernels[@]}"; do
	echo "== bystander: kernel $k"
	"$out/vmtest" -kernel "$k" -timeout "${VM_TIMEOUT:-30m}" "${files[@]}" -- /vmbystander "${args[@]}" 2>&1 |
		tee "$out/$k.log" | grep -E '^BYSTANDER |vmbystander:' || true
	[ "${PIPESTATUS[0]}" = 0 ] || status=1
done
exit $status
