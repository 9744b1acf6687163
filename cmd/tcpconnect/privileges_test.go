// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/sys/unix"
)

// startWithCaps returns a start function for startToolWith that runs
// the tool as uid with exactly caps (bounding, permitted, effective and
// ambient sets), in a mount namespace of its own where tracefs is
// mounted, as on a host that mounts it: the documented privileges do not
// include mounting it.
func startWithCaps(t *testing.T, uid uint32, caps []uintptr) func(*exec.Cmd) error {
	return func(cmd *exec.Cmd) error {
		errc := make(chan error, 1)
		go func() {
			// Never unlocked: this thread's namespace and bounding set
			// end with it.
			runtime.LockOSThread()
			errc <- func() error {
				if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
					return fmt.Errorf("unshare: %w", err)
				}
				if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
					return err
				}
				if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil && err != unix.EBUSY {
					return fmt.Errorf("mounting tracefs: %w", err)
				}
				for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
					keep := false
					for _, k := range caps {
						keep = keep || k == c
					}
					if !keep {
						if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
							return fmt.Errorf("dropping capability %d: %w", c, err)
						}
					}
				}
				cmd.SysProcAttr = &syscall.SysProcAttr{AmbientCaps: caps}
				if uid != 0 {
					cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
				}
				return cmd.Start()
			}()
		}()
		return <-errc
	}
}

// capMask is caps as /proc/PID/status prints them.
func capMask(caps []uintptr) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

// TestDocumentedPrivileges: the tool traces with exactly the capabilities
// the README documents, where tracefs and the cgroup v2 hierarchy are
// mounted: CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN as user 0 (a container's
// root), and CAP_DAC_OVERRIDE on top as another user (tracefs is root's
// alone: mode 0700).
func TestDocumentedPrivileges(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	base := []uintptr{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN}
	// Debian's kernels add perf_event_paranoid 3, which keeps
	// perf_event_open (tracepoint attach) for CAP_SYS_ADMIN: documented.
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > 2 {
			t.Logf("perf_event_paranoid is %d: CAP_SYS_ADMIN is needed too", n)
			base = append(base, unix.CAP_SYS_ADMIN)
		}
	}
	for _, tc := range []struct {
		name string
		uid  uint32
		caps []uintptr
	}{
		{"uid0", 0, base},
		{"nobody", 65534, append(append([]uintptr(nil), base...), unix.CAP_DAC_OVERRIDE)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startToolWith(t, startWithCaps(t, tc.uid, tc.caps), "--json", "-P", strconv.Itoa(int(ap.Port())))
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"CapEff:\t", "CapPrm:\t", "CapBnd:\t"} {
				if !strings.Contains(string(status), field+capMask(tc.caps)) {
					t.Errorf("the tool does not run with exactly %s=%s:\n%s", field, capMask(tc.caps), status)
				}
			}
			if !strings.Contains(string(status), fmt.Sprintf("Uid:\t%d\t", tc.uid)) {
				t.Errorf("the tool does not run as uid %d", tc.uid)
			}
			sport, errno := testutil.ConnectRaw(ap)
			if errno != 0 {
				t.Fatal(errno)
			}
			ev := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport)))
			if ev["pid"] != float64(os.Getpid()) {
				t.Errorf("event %v", ev)
			}
			p.stop(t, syscall.SIGINT)
		})
	}
}
