// SPDX-License-Identifier: Apache-2.0

package main

// The man page, docs/flags.md and the shell completions are generated
// from the flag declarations (newFlagSet) by TestDocs, which fails when
// the committed files are stale. After adding or changing a flag, run
// `go generate ./cmd/tcpconnect` and commit what it writes.
//
//go:generate go test -count=1 -run ^TestDocs$ . -args -update-docs
