// SPDX-License-Identifier: Apache-2.0

// Package testutil holds helpers for the privileged kernel tests of the other
// packages: throw-away network namespaces, veth pairs, routes, sysctls,
// nftables rules that provoke specific connect() outcomes, and a packet
// capture that tells which source port the kernel picked for a SYN.
//
// Everything is done with syscalls and netlink (vishvananda/netlink,
// google/nftables) rather than by running ip(8) or nft(8), because the same
// tests must run inside a minimal QEMU guest that only has busybox.
package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// requirePrivilegedEnv makes a missing privilege a failure instead of a skip.
// CI sets it so that a run that silently skipped every kernel test cannot be
// reported as green.
const requirePrivilegedEnv = "TCPCONNECT_REQUIRE_PRIVILEGED"

// neededCaps are the capabilities the kernel tests use: CAP_SYS_ADMIN for
// setns/unshare and BPF, CAP_NET_ADMIN for links, routes, sysctls and
// nftables, CAP_NET_RAW for the AF_PACKET capture. Root inside an
// unprivileged container usually lacks some of them, and such a run should
// skip with a clear reason instead of failing halfway with EPERM.
var neededCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	{unix.CAP_NET_RAW, "CAP_NET_RAW"},
}

// RequirePrivileged skips the test when not running as root with the
// capabilities above, but fails it when TCPCONNECT_REQUIRE_PRIVILEGED=1 is set,
// so CI cannot go green by skipping.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	requirePrivileged(t, missingPrivilege(), os.Getenv(requirePrivilegedEnv) == "1")
}

// requirePrivileged is RequirePrivileged's decision: nothing when nothing
// is missing (reason ""), else a failure when required, else a skip.
func requirePrivileged(t testing.TB, reason string, required bool) {
	t.Helper()
	if reason == "" {
		return
	}
	if required {
		t.Fatalf("PRIVILEGED TEST CANNOT RUN: %s, and %s=1 requires it to", reason, requirePrivilegedEnv)
		return
	}
	t.Skipf("SKIPPING PRIVILEGED TEST: %s (run as root to exercise the kernel; set %s=1 to turn this skip into a failure)",
		reason, requirePrivilegedEnv)
}

// missingPrivilege returns why the process cannot run privileged tests, or "".
func missingPrivilege() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("not root (euid %d)", euid)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Sprintf("capget: %v", err)
	}
	var missing []string
	for _, c := range neededCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return "root but missing " + strings.Join(missing, ", ")
	}
	return ""
}
