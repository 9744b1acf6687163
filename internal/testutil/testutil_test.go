// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses used inside the namespaces the tests create; no packet with them
// ever leaves those namespaces.
var (
	addrA4 = netip.MustParsePrefix("10.99.0.1/24")
	addrB4 = netip.MustParsePrefix("10.99.0.2/24")
	addrA6 = netip.MustParsePrefix("fd00:99::1/64")
	addrB6 = netip.MustParsePrefix("fd00:99::2/64")
)

// pair makes two namespaces joined by a veth with one IPv4 and one IPv6
// address on each side.
func pair(t *testing.T) (a, b *NetNS) {
	t.Helper()
	a, b = NewNetNS(t), NewNetNS(t)
	Veth(t, a, b, []netip.Prefix{addrA4, addrA6}, []netip.Prefix{addrB4, addrB6})
	return a, b
}

// listen opens a TCP listener on addr (port 0: any) inside ns and returns the
// address it got. The listener keeps ns's namespace after Do returns.
func listen(t *testing.T, ns *NetNS, addr netip.Addr) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %v: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

type dialResult struct {
	fd      int
	lport   uint16 // from getsockname after connect
	err     error  // connect's error (EINPROGRESS for a pending non-blocking one)
	elapsed time.Duration
}

// dial creates a TCP socket in ns (nil: the current namespace), binds it to
// src if valid, and connects to dst. Raw syscalls rather than net.Dial,
// because the tests need connect's exact errno and a connect left pending.
// The socket is closed at cleanup.
func dial(t *testing.T, ns *NetNS, src, dst netip.AddrPort, nonblock bool) dialResult {
	t.Helper()
	var r dialResult
	fn := func() error {
		family := unix.AF_INET6
		if dst.Addr().Is4() {
			family = unix.AF_INET
		}
		typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
		if nonblock {
			typ |= unix.SOCK_NONBLOCK
		}
		fd, err := unix.Socket(family, typ, 0)
		if err != nil {
			return err
		}
		r.fd = fd
		if src.IsValid() {
			if err := unix.Bind(fd, sockaddr(src)); err != nil {
				return fmt.Errorf("bind %v: %w", src, err)
			}
		}
		start := time.Now()
		r.err = unix.Connect(fd, sockaddr(dst))
		r.elapsed = time.Since(start)
		r.lport = localPort(fd)
		return nil
	}
	var err error
	if ns == nil {
		err = fn()
	} else {
		err = ns.Do(fn)
	}
	if r.fd > 0 {
		t.Cleanup(func() { _ = unix.Close(r.fd) })
	}
	if err != nil {
		t.Fatalf("dial %v: %v", dst, err)
	}
	return r
}

func localPort(fd int) uint16 {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	return SockPort(sa)
}

// stillPending reports whether a non-blocking connect on fd is still
// unresolved after wait: no POLLOUT/POLLERR and SO_ERROR 0.
func stillPending(t *testing.T, fd int, wait time.Duration) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	var n int
	for deadline := time.Now().Add(wait); ; {
		var err error
		n, err = unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
		// The Go runtime's preemption signals interrupt poll, which
		// SA_RESTART does not restart.
		if err == unix.EINTR {
			if time.Now().Before(deadline) {
				continue
			}
			n, err = 0, nil
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		break
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Fatalf("SO_ERROR: %v", err)
	}
	if n != 0 || soErr != 0 {
		t.Logf("connect resolved: revents %#x, SO_ERROR %v", pfd[0].Revents, unix.Errno(soErr))
		return false
	}
	return true
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func threadNSInode(t *testing.T) uint64 {
	t.Helper()
	return nsInode(t, fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

// TestRequirePrivileged: a missing privilege skips the test with the
// reason, or fails it when CI requires privileged tests; nothing missing,
// nothing happens.
func TestRequirePrivileged(t *testing.T) {
	for _, tc := range []struct {
		reason        string
		required      bool
		skip, failure bool
	}{
		{reason: "", required: false},
		{reason: "", required: true},
		{reason: "not root (euid 1000)", required: false, skip: true},
		{reason: "not root (euid 1000)", required: true, failure: true},
	} {
		r := &recorder{}
		requirePrivileged(r, tc.reason, tc.required)
		if (r.skipped != "") != tc.skip || (r.failed != "") != tc.failure {
			t.Errorf("reason %q, required %v: skipped %q, failed %q", tc.reason, tc.required, r.skipped, r.failed)
		}
		if msg := r.skipped + r.failed; tc.reason != "" && !strings.Contains(msg, tc.reason) {
			t.Errorf("reason %q, required %v: the message %q does not say why", tc.reason, tc.required, msg)
		}
	}
}

// TestMissingPrivilege compares missingPrivilege with what the kernel
// shows in /proc/self/status: root, and every needed capability in CapEff.
func TestMissingPrivilege(t *testing.T) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var capEff uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &capEff); err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
		}
	}
	want := os.Geteuid() == 0
	for _, c := range neededCaps {
		if capEff&(1<<c.bit) == 0 {
			want = false
		}
	}
	if got := missingPrivilege(); (got == "") != want {
		t.Errorf("missingPrivilege() = %q, but euid %d and CapEff %#x say privileged=%v", got, os.Geteuid(), capEff, want)
	}
}

func TestNetNS(t *testing.T) {
	RequirePrivileged(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNSInode(t)

	n := NewNetNS(t)
	if got := threadNSInode(t); got != before {
		t.Fatalf("NewNetNS moved the calling thread: namespace inode %d, was %d", got, before)
	}
	if n.Inode() == before {
		t.Fatalf("new namespace has the host's inode %d", before)
	}
	if got := nsInode(t, n.Path()); got != n.Inode() {
		t.Fatalf("stat -L %s: inode %d, Inode() says %d", n.Path(), got, n.Inode())
	}

	// Inside Do the thread is in the namespace; listeners made there on
	// 127.0.0.1 and ::1 keep working after Do returns.
	var inside uint64
	var lns []net.Listener
	err := n.Do(func() error {
		inside = nsInode(t, fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	for _, ln := range lns {
		defer ln.Close()
	}
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside != n.Inode() {
		t.Fatalf("thread inside Do is in namespace %d, want %d", inside, n.Inode())
	}
	if got := threadNSInode(t); got != before {
		t.Fatalf("Do moved the calling thread")
	}
	for _, ln := range lns {
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept() // on an arbitrary thread: the socket keeps its namespace
			if err == nil {
				c.Close()
			}
			accepted <- err
		}()
		if r := dial(t, n, netip.AddrPort{}, dst, false); r.err != nil {
			t.Fatalf("connect to %v inside the namespace: %v", dst, r.err)
		}
		if err := <-accepted; err != nil {
			t.Fatalf("accept on %v after Do returned: %v", dst, err)
		}
	}

	// Errors, panics and Goexit inside fn come back as errors; the thread is
	// restored in every case.
	sentinel := errors.New("sentinel")
	if err := n.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := n.Do(func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Do with a panicking fn returned %v", err)
	}
	if err := n.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Errorf("Do with fn calling Goexit returned nil")
	}

	if err := n.Sysctl("net.ipv4.tcp_syn_retries", "1"); err != nil {
		t.Fatalf("Sysctl: %v", err)
	}
	var inNS, onHost string
	_ = n.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syn_retries")
		inNS = strings.TrimSpace(string(b))
		return err
	})
	b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_syn_retries")
	onHost = strings.TrimSpace(string(b))
	if inNS != "1" || onHost == "1" {
		t.Errorf("tcp_syn_retries: %q in the namespace (want 1), %q on the host", inNS, onHost)
	}
	if err := n.Sysctl("net/../../etc/passwd", "x"); err == nil {
		t.Errorf("Sysctl accepted a key escaping /proc/sys")
	}
}

func TestNetNSRemoved(t *testing.T) {
	RequirePrivileged(t)
	hostNets := countNetNSFds(t)
	var n *NetNS
	var ifA string
	t.Run("use", func(t *testing.T) {
		a, b := pair(t)
		n = a
		ifA, _ = Veth(t, a, b, nil, nil)
		StartSYNCapture(t, a)
		if _, err := b.DropSYN(1); err != nil {
			t.Fatal(err)
		}
	})
	if err := n.Do(func() error { return nil }); err == nil {
		t.Errorf("Do on a removed namespace succeeded")
	}
	if got := countNetNSFds(t); got != hostNets {
		t.Errorf("%d namespace fds open after cleanup, %d before", got, hostNets)
	}
	if _, err := net.InterfaceByName(ifA); err == nil {
		t.Errorf("veth %s exists on the host", ifA)
	}
}

// countNetNSFds counts this process's open fds that refer to network
// namespaces.
func countNetNSFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "net:[") {
			n++
		}
	}
	return n
}

func TestVeth(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b := pair(t)
	capB := StartSYNCapture(t, b)
	for _, dstAddr := range []netip.Addr{addrB4.Addr(), addrB6.Addr()} {
		dst := listen(t, b, dstAddr)
		r := dial(t, a, netip.AddrPort{}, dst, false)
		if r.err != nil {
			t.Fatalf("connect %v from a: %v", dst, r.err)
		}
		ports := capB.SourcePorts(dst, 2*time.Second)
		if !slices.Equal(ports, []uint16{r.lport}) {
			t.Errorf("SYNs to %v captured in b with source ports %v; the socket says %d", dst, ports, r.lport)
		}
	}
}

func TestSYNCaptureHost(t *testing.T) {
	RequirePrivileged(t)
	c := StartSYNCapture(t, nil)
	for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		// A socket bound but not listening holds a port that refuses
		// connections for as long as we keep it.
		closed := dial(t, nil, netip.AddrPortFrom(lo, 0), netip.AddrPortFrom(lo, 1), true)
		dst := netip.AddrPortFrom(lo, closed.lport)

		r := dial(t, nil, netip.AddrPort{}, dst, false)
		if r.err != unix.ECONNREFUSED {
			t.Fatalf("connect %v: %v, want ECONNREFUSED", dst, r.err)
		}
		ports := c.SourcePorts(dst, 2*time.Second)
		t.Logf("refused connect to %v: getsockname says %d, capture says %v", dst, r.lport, ports)
		if len(ports) != 1 || ports[0] == 0 {
			t.Fatalf("capture of refused connect to %v: ports %v, want one non-zero", dst, ports)
		}

		// A second capture, of a connect from a socket bound to a known
		// port: it must report exactly that port.
		c2 := StartSYNCapture(t, nil)
		holder := dial(t, nil, netip.AddrPortFrom(lo, 0), netip.AddrPortFrom(lo, 1), true)
		known := holder.lport
		_ = unix.Close(holder.fd) // free the port for the bind below
		r = dial(t, nil, netip.AddrPortFrom(lo, known), dst, false)
		if r.err != unix.ECONNREFUSED {
			t.Fatalf("connect %v from port %d: %v, want ECONNREFUSED", dst, known, r.err)
		}
		if ports := c2.SourcePorts(dst, 2*time.Second); !slices.Equal(ports, []uint16{known}) {
			t.Errorf("second capture after connect from port %d: %v", known, ports)
		}
		// SourcePorts returns once it has one port; the first capture's
		// reader may not have read the second SYN yet.
		ports = c.SourcePorts(dst, 0)
		for deadline := time.Now().Add(2 * time.Second); len(ports) < 2 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			ports = c.SourcePorts(dst, 0)
		}
		if len(ports) != 2 || ports[1] != known {
			t.Errorf("first capture after both connects: %v, want [<first> %d]", ports, known)
		}
	}
	if err := c.Err(); err != nil {
		t.Errorf("capture: %v", err)
	}
}

// clientServer is the setup of the firewall tests: a veth pair, listeners in
// b on both families, net.ipv4.tcp_syn_retries=1 in a (it governs IPv6 too)
// so that blocked connects time out in seconds.
func clientServer(t *testing.T) (a, b *NetNS, dsts []netip.AddrPort) {
	t.Helper()
	a, b = pair(t)
	if err := a.Sysctl("net.ipv4.tcp_syn_retries", "1"); err != nil {
		t.Fatal(err)
	}
	return a, b, []netip.AddrPort{listen(t, b, addrB4.Addr()), listen(t, b, addrB6.Addr())}
}

// blockingDials connects to each dst from a concurrently (so the timeouts
// overlap) and returns the results in dst order.
func blockingDials(t *testing.T, a *NetNS, dsts []netip.AddrPort) []dialResult {
	t.Helper()
	res := make([]dialResult, len(dsts))
	var wg sync.WaitGroup
	for i, dst := range dsts {
		wg.Go(func() {
			// dial may call t.Fatal, which is fine only on the test
			// goroutine; a failure here is reported as an error instead.
			fn := func() error {
				family := unix.AF_INET6
				if dst.Addr().Is4() {
					family = unix.AF_INET
				}
				fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				res[i].fd = fd
				start := time.Now()
				res[i].err = unix.Connect(fd, sockaddr(dst))
				res[i].elapsed = time.Since(start)
				res[i].lport = localPort(fd)
				return nil
			}
			if err := a.Do(fn); err != nil {
				t.Errorf("dial %v: %v", dst, err)
			}
		})
	}
	wg.Wait()
	for _, r := range res {
		if r.fd > 0 {
			t.Cleanup(func() { _ = unix.Close(r.fd) })
		}
	}
	return res
}

func TestDropSYN(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b, dsts := clientServer(t)
	capB := StartSYNCapture(t, b)
	removes := map[uint16]func() error{}
	for _, dst := range dsts {
		if _, ok := removes[dst.Port()]; ok {
			continue
		}
		remove, err := b.DropSYN(dst.Port())
		if err != nil {
			t.Fatal(err)
		}
		removes[dst.Port()] = remove
	}
	for _, dst := range dsts {
		r := dial(t, a, netip.AddrPort{}, dst, true)
		if r.err != unix.EINPROGRESS {
			t.Fatalf("non-blocking connect %v: %v, want EINPROGRESS", dst, r.err)
		}
		if !stillPending(t, r.fd, 300*time.Millisecond) {
			t.Errorf("connect %v resolved although its SYNs are dropped", dst)
		}
		// The packet tap runs before netfilter's input hook, so b still
		// sees the dropped SYN.
		if ports := capB.SourcePorts(dst, time.Second); !slices.Equal(ports, []uint16{r.lport}) {
			t.Errorf("dropped SYN to %v: capture says %v, socket says %d", dst, ports, r.lport)
		}
	}
	for i, r := range blockingDials(t, a, dsts) {
		t.Logf("blocking connect %v with SYNs dropped: %v after %v", dsts[i], r.err, r.elapsed.Round(time.Millisecond))
		if r.err != unix.ETIMEDOUT || r.elapsed > 10*time.Second {
			t.Errorf("blocking connect %v: %v after %v, want ETIMEDOUT within 10s", dsts[i], r.err, r.elapsed)
		}
	}
	for _, remove := range removes {
		if err := remove(); err != nil {
			t.Fatal(err)
		}
		if err := remove(); err != nil {
			t.Errorf("second remove: %v", err)
		}
	}
	for _, dst := range dsts {
		if r := dial(t, a, netip.AddrPort{}, dst, false); r.err != nil {
			t.Errorf("connect %v after removing the rule: %v", dst, r.err)
		}
	}
}

func TestRejectICMP(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b, dsts := clientServer(t)
	var removes []func() error
	for _, dst := range dsts {
		remove, err := b.RejectICMP(dst.Port())
		if err != nil {
			t.Fatal(err)
		}
		removes = append(removes, remove)
	}
	// More ICMP errors than the per-peer burst (6), to show that the rate
	// limit is off. The connects run concurrently because each takes about
	// one initial RTO (see RejectICMP).
	var all []netip.AddrPort
	for range 4 {
		all = append(all, dsts...)
	}
	for i, r := range blockingDials(t, a, all) {
		if i < len(dsts) {
			t.Logf("connect %v rejected with ICMP host-unreachable: %v after %v", all[i], r.err, r.elapsed.Round(time.Millisecond))
		}
		if r.err != unix.EHOSTUNREACH || r.elapsed > 3*time.Second {
			t.Errorf("connect %v #%d: %v after %v, want EHOSTUNREACH within 3s", all[i], i, r.err, r.elapsed)
		}
	}
	for _, remove := range removes {
		if err := remove(); err != nil {
			t.Fatal(err)
		}
	}
	for _, dst := range dsts {
		if r := dial(t, a, netip.AddrPort{}, dst, false); r.err != nil {
			t.Errorf("connect %v after removing the rule: %v", dst, r.err)
		}
	}
}

func TestDropOutputSYN(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b, dsts := clientServer(t)
	capA, capB := StartSYNCapture(t, a), StartSYNCapture(t, b)
	remove, err := a.DropOutputSYN(dsts[0].Port())
	if err != nil {
		t.Fatal(err)
	}
	remove6, err := a.DropOutputSYN(dsts[1].Port())
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range dsts {
		r := dial(t, a, netip.AddrPort{}, dst, true)
		t.Logf("non-blocking connect %v with output SYNs dropped: %v", dst, r.err)
		if r.err != unix.EINPROGRESS {
			t.Fatalf("non-blocking connect %v: %v, want EINPROGRESS", dst, r.err)
		}
		if !stillPending(t, r.fd, 300*time.Millisecond) {
			t.Errorf("connect %v resolved although its SYNs are dropped", dst)
		}
	}
	for i, r := range blockingDials(t, a, dsts) {
		t.Logf("blocking connect %v with output SYNs dropped: %v after %v", dsts[i], r.err, r.elapsed.Round(time.Millisecond))
		if r.err != unix.ETIMEDOUT || r.elapsed > 10*time.Second {
			t.Errorf("blocking connect %v: %v after %v, want ETIMEDOUT within 10s", dsts[i], r.err, r.elapsed)
		}
	}
	// The output hook runs before the packet tap, so a dropped SYN is
	// seen nowhere: SYNCapture cannot give ground truth in this case.
	for _, dst := range dsts {
		if p := capA.SourcePorts(dst, 0); p != nil {
			t.Errorf("SYN to %v dropped in output was captured in a: %v", dst, p)
		}
		if p := capB.SourcePorts(dst, 0); p != nil {
			t.Errorf("SYN to %v dropped in output was captured in b: %v", dst, p)
		}
	}
	for _, rm := range []func() error{remove, remove6} {
		if err := rm(); err != nil {
			t.Fatal(err)
		}
	}
	for _, dst := range dsts {
		if r := dial(t, a, netip.AddrPort{}, dst, false); r.err != nil {
			t.Errorf("connect %v after removing the rule: %v", dst, r.err)
		}
	}
}

func TestRoutes(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b := pair(t)
	type routeCase struct {
		typ  string
		dst  string // prefix; connect goes to its first host address
		want unix.Errno
	}
	cases := []routeCase{
		{"prohibit", "10.98.1.0/24", unix.EACCES},
		{"prohibit", "fd00:98:1::/64", unix.EACCES},
		{"unreachable", "10.98.2.0/24", unix.EHOSTUNREACH},
		{"unreachable", "fd00:98:2::/64", unix.EHOSTUNREACH},
		{"blackhole", "10.98.3.0/24", unix.EINVAL},
		{"blackhole", "fd00:98:3::/64", unix.EINVAL},
	}
	for _, c := range cases {
		p := netip.MustParsePrefix(c.dst)
		if err := a.AddRoute(p, c.typ); err != nil {
			t.Fatal(err)
		}
		dst := netip.AddrPortFrom(p.Addr().Next(), 80)
		r := dial(t, a, netip.AddrPort{}, dst, false)
		t.Logf("%s route: connect %v: %v after %v", c.typ, dst, r.err, r.elapsed.Round(time.Microsecond))
		if r.err != c.want || r.elapsed > time.Second {
			t.Errorf("%s route: connect %v: %v after %v, want %v at once", c.typ, dst, r.err, r.elapsed, c.want)
		}
	}
	// Without any route, for comparison.
	for _, s := range []string{"10.97.0.1", "fd00:97::1"} {
		dst := netip.AddrPortFrom(netip.MustParseAddr(s), 80)
		r := dial(t, a, netip.AddrPort{}, dst, false)
		t.Logf("no route: connect %v: %v", dst, r.err)
		if r.err != unix.ENETUNREACH {
			t.Errorf("no route: connect %v: %v, want ENETUNREACH", dst, r.err)
		}
	}
	if err := a.AddRoute(netip.MustParsePrefix("10.98.4.0/24"), "anycast"); err == nil {
		t.Errorf("AddRoute accepted an unknown type")
	}

	// "unicast": an on-link route through a's only veth; b answers ARP and
	// NDP for its extra addresses on that link, and replies via its
	// connected route.
	extra4, extra6 := netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("fd00:96::1")
	if err := b.AddAddrs(vethNameOf(t, b), netip.PrefixFrom(extra4, 32), netip.PrefixFrom(extra6, 128)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{netip.MustParsePrefix("10.96.0.0/24"), netip.MustParsePrefix("fd00:96::/64")} {
		if err := a.AddRoute(p, "unicast"); err != nil {
			t.Fatal(err)
		}
	}
	lnExtra4, lnExtra6 := listen(t, b, extra4), listen(t, b, extra6)
	for _, dst := range []netip.AddrPort{lnExtra4, lnExtra6} {
		r := dial(t, a, netip.AddrPort{}, dst, false)
		t.Logf("unicast on-link route: connect %v: %v after %v", dst, r.err, r.elapsed.Round(time.Microsecond))
		if r.err != nil {
			t.Errorf("connect %v over unicast on-link route: %v", dst, r.err)
		}
	}

	// AddRouteVia: a route through b as gateway to an address b has on lo.
	via4 := netip.MustParseAddr("10.95.0.1")
	if err := b.AddAddrs("lo", netip.PrefixFrom(via4, 32)); err != nil {
		t.Fatal(err)
	}
	lnVia := listen(t, b, via4)
	ifA := vethNameOf(t, a)
	if err := a.AddRouteVia(netip.MustParsePrefix("10.95.0.0/24"), addrB4.Addr(), ifA); err != nil {
		t.Fatal(err)
	}
	r := dial(t, a, netip.AddrPort{}, lnVia, false)
	t.Logf("route via gateway: connect %v: %v after %v", lnVia, r.err, r.elapsed.Round(time.Microsecond))
	if r.err != nil {
		t.Errorf("connect %v via gateway %v: %v", lnVia, addrB4.Addr(), r.err)
	}
	if err := a.AddRouteVia(netip.MustParsePrefix("10.95.1.0/24"), netip.Addr{}, "nonexistent0"); err == nil {
		t.Errorf("AddRouteVia accepted a missing device")
	}
}

// vethNameOf returns the name of ns's only non-loopback interface.
func vethNameOf(t *testing.T, ns *NetNS) string {
	t.Helper()
	var name string
	err := ns.Do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 {
				name = i.Name
			}
		}
		return nil
	})
	if err != nil || name == "" {
		t.Fatalf("find veth: %v", err)
	}
	return name
}

func TestPortRange(t *testing.T) {
	RequirePrivileged(t)
	t.Parallel()
	a, b := pair(t)
	if err := a.Sysctl("net.ipv4.ip_local_port_range", "40000 40000"); err != nil {
		t.Fatal(err)
	}
	capB := StartSYNCapture(t, b)
	// ip_local_port_range is net.ipv4.* but governs IPv6 too.
	for _, addr := range []netip.Addr{addrB4.Addr(), addrB6.Addr()} {
		dst := listen(t, b, addr)
		first := dial(t, a, netip.AddrPort{}, dst, false)
		if first.err != nil || first.lport != 40000 {
			t.Fatalf("first connect %v: %v from port %d, want success from 40000", dst, first.err, first.lport)
		}
		second := dial(t, a, netip.AddrPort{}, dst, false)
		t.Logf("second concurrent connect %v with one local port: %v", dst, second.err)
		if second.err != unix.EADDRNOTAVAIL {
			t.Errorf("second connect %v: %v, want EADDRNOTAVAIL", dst, second.err)
		}
		if ports := capB.SourcePorts(dst, time.Second); !slices.Equal(ports, []uint16{40000}) {
			t.Errorf("capture for %v: %v, want [40000]", dst, ports)
		}
	}
	// The port is only exhausted per destination: another listener port
	// can still be reached from 40000.
	other := listen(t, b, addrB4.Addr())
	if r := dial(t, a, netip.AddrPort{}, other, false); r.err != nil || r.lport != 40000 {
		t.Errorf("connect %v: %v from port %d, want success from 40000", other, r.err, r.lport)
	}
}
