#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs every test of the project, in every Go module (tools/modules.sh):
# unit tests anywhere, and the privileged tests that load the tracer into
# this kernel and make real connections (they need root; without it they
# skip loudly, and with TCPCONNECT_REQUIRE_PRIVILEGED=1, as CI sets, they
# fail instead). Extra arguments go to every `go test` (e.g. ./test.sh
# -run Loopback -v). Exits non-zero if any module's tests failed.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then
	exec sudo env "PATH=$PATH" "TCPCONNECT_REQUIRE_PRIVILEGED=${TCPCONNECT_REQUIRE_PRIVILEGED:-}" "$0" "$@"
fi
status=0
for m in $(tools/modules.sh); do
	(cd "$m" && go test -count=1 "$@" ./...) || status=1
done
exit $status
