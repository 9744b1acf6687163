// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestBadAddressIsNoAttempt: connect() with an address too short for its
// family (EINVAL) or of the other family (EAFNOSUPPORT) fails before any
// attempt. The kernel copied only addr_len bytes of it onto its stack;
// the rest of the buffer the connect hooks see is stale stack, which must
// never be printed as a destination. Only the real connect that follows,
// refused, is reported.
func TestBadAddressIsNoAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ns := testutil.NewNetNS(t)
		// SyncErrors: on sockops, failures inside connect() show only with it.
		r := start(t, Config{Backend: b, Outcomes: true, SyncErrors: true, Netns: uint32(ns.Inode())})
		// A sockaddr_in6 (28 bytes) to ::1 port 9, family set per call.
		addr := make([]byte, 28)
		binary.BigEndian.PutUint16(addr[2:4], 9)
		addr[23] = 1
		// The same bytes read as a sockaddr_in: 0.0.0.0:9.
		calls := []struct {
			what   string
			domain int
			family uint16
			len    int
			want   unix.Errno
		}{
			{"IPv4, 8-byte address", unix.AF_INET, unix.AF_INET, 8, unix.EINVAL},
			{"IPv4 socket, IPv6 address", unix.AF_INET, unix.AF_INET6, 28, unix.EAFNOSUPPORT},
			{"IPv6, 20-byte address", unix.AF_INET6, unix.AF_INET6, 20, unix.EINVAL},
			{"IPv6 socket, IPv4 address", unix.AF_INET6, unix.AF_INET, 28, unix.EAFNOSUPPORT},
		}
		var refused netip.AddrPort
		var sport uint16
		if err := ns.Do(func() error {
			for _, c := range calls {
				fd, err := unix.Socket(c.domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				*(*uint16)(unsafe.Pointer(&addr[0])) = c.family // host order
				_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&addr[0])), uintptr(c.len))
				unix.Close(fd)
				if errno != c.want {
					t.Errorf("%s: connect: %v, want %v", c.what, errno, c.want)
				}
			}
			// Then a real attempt, refused: nothing listens in the
			// test's own namespace.
			refused = netip.MustParseAddrPort("127.0.0.1:9")
			d := dial(t, refused)
			sport = d.sport
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		expectOutcome(t, r, refused, sport, event.ResultRefused, unix.ECONNREFUSED)
		for _, e := range r.snapshot() {
			if e.Daddr != refused.Addr() || e.Dport != refused.Port() {
				t.Errorf("reported, but no attempt was made: %v %v:%d %v %v", e.Kind, e.Daddr, e.Dport, e.Result, unix.ErrnoName(e.Errno))
			}
		}
	})
}

// TestConnectAgainIsNoAttempt: a program that calls connect() again on a
// non-blocking socket to learn how its attempt ended (or a connect()
// restarted after a signal, once the answer has come) gets the attempt's
// error from the kernel; it is one attempt, reported once. The metrics
// counted such a refused connect twice (TestMetricsEndToEnd: 501 of 500,
// now and then, when Go's preemption signal restarted a connect).
func TestConnectAgainIsNoAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ns := testutil.NewNetNS(t)
		r := start(t, Config{Backend: b, Outcomes: true, SyncErrors: true, Netns: uint32(ns.Inode())})
		refused := netip.MustParseAddrPort("127.0.0.1:9")
		var sport uint16
		if err := ns.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Connect(fd, testutil.Sockaddr(refused)); err != unix.EINPROGRESS && err != unix.ECONNREFUSED {
				return err
			}
			sa, err := unix.Getsockname(fd)
			if err != nil {
				return err
			}
			sport = testutil.SockPort(sa)
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, 2000); err != nil {
				return err
			}
			// Asked again: the kernel answers with the attempt's error.
			if err := unix.Connect(fd, testutil.Sockaddr(refused)); err != unix.ECONNREFUSED {
				t.Errorf("second connect: %v, want ECONNREFUSED", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		expectOutcome(t, r, refused, 0, event.ResultRefused, unix.ECONNREFUSED)
		// Then a marker attempt, so that anything the first one caused
		// has arrived before it.
		if err := ns.Do(func() error {
			testutil.ConnectRaw(netip.MustParseAddrPort("127.0.0.1:10"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		expectOutcome(t, r, netip.MustParseAddrPort("127.0.0.1:10"), 0, event.ResultRefused, unix.ECONNREFUSED)
		n := 0
		for _, e := range r.snapshot() {
			if e.Kind == event.KindOutcome && e.Dport == refused.Port() {
				n++
			}
		}
		if n != 1 {
			t.Errorf("one attempt (port %d) reported %d times", sport, n)
		}
	})
}
