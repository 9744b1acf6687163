#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Prints the folder of every Go module of the repository, one a line,
# relative to its root: the tool's (.) first, then the modules that keep
# their dependencies out of the tool's go.mod (bench, deploy, tools).
# test.sh and .ci/run run their tests and checks in each. Modules under
# testdata/ are left out, as Go leaves testdata/ out of ./...: they are
# built on purpose by the tests or commands that use them.
set -euo pipefail
cd "$(dirname "$0")/.."
find . -path './.*' -prune -o -name testdata -prune -o -name go.mod -printf '%h\n' | sort
