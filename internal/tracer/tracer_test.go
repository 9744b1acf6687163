// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	testutil.RunChildIfRequested()
	os.Exit(m.Run())
}

// collector is a Sink that keeps copies of the events.
type collector struct {
	mu     sync.Mutex
	events []event.Event
	added  chan struct{}
}

func (c *collector) Event(e *event.Event) error {
	c.mu.Lock()
	c.events = append(c.events, *e)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) Flush() error { return nil }

func (c *collector) snapshot() []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event.Event(nil), c.events...)
}

// wait returns the first event matching match, failing after timeout.
func (c *collector) wait(t testing.TB, timeout time.Duration, what string, match func(*event.Event) bool) event.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, e := range c.snapshot() {
			if match(&e) {
				return e
			}
		}
		select {
		case <-c.added:
		case <-deadline:
			t.Fatalf("no event for %s within %v; got %d events: %+v", what, timeout, len(c.snapshot()), c.snapshot())
		}
	}
}

// none fails if an event matching match arrives within d.
func (c *collector) none(t testing.TB, d time.Duration, what string, match func(*event.Event) bool) {
	t.Helper()
	time.Sleep(d)
	for _, e := range c.snapshot() {
		if match(&e) {
			t.Errorf("unexpected event for %s: %+v", what, e)
		}
	}
}

// running is a tracer reading into a collector, stopped by t.Cleanup.
type running struct {
	*Tracer
	*collector
	stop func()
}

func start(t testing.TB, cfg Config) *running {
	t.Helper()
	cfg.Logf = t.Logf
	tr, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Backend, err)
	}
	if cfg.Backend != BackendAuto && tr.Backend() != cfg.Backend {
		t.Fatalf("asked for backend %s, got %s", cfg.Backend, tr.Backend())
	}
	c := &collector{added: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, c) }()
	var once sync.Once
	// stop ends Run (which drains the ring buffer); the maps stay
	// readable until the cleanup closes the tracer.
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &running{Tracer: tr, collector: c, stop: stop}
}

// forEachBackend runs f once per backend this kernel supports. A backend
// whose mechanism the kernel lacks (probe fails with a do-nothing
// program) is skipped loudly; one that the kernel has must work.
//
// TCPCONNECT_TEST_BACKEND=NAME (the multi-kernel runner sets it) runs f
// for that backend only, and then the backend must work: a forced path
// that cannot attach fails the run. NAME may be "auto"; with
// TCPCONNECT_TEST_EXPECT_AUTO=B, auto must then choose B.
func forEachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	testutil.RequirePrivileged(t)
	if forced := os.Getenv("TCPCONNECT_TEST_BACKEND"); forced != "" {
		b, err := ParseBackend(forced)
		if err != nil {
			t.Fatalf("TCPCONNECT_TEST_BACKEND: %v", err)
		}
		t.Run(forced, func(t *testing.T) {
			if b == BackendAuto {
				autoChoice(t) // checks the choice; the tests then run through auto
			} else if err := probe(b); err != nil {
				t.Fatalf("forced backend %s cannot attach on this kernel: %v", b, err)
			}
			f(t, b)
		})
		return
	}
	for _, b := range Backends {
		t.Run(string(b), func(t *testing.T) {
			if err := probe(b); err != nil {
				t.Skipf("SKIP: this kernel cannot attach backend %s at all: %v", b, err)
			}
			f(t, b)
		})
	}
}

// autoChoice opens the tracer with auto, checks its choice against
// TCPCONNECT_TEST_EXPECT_AUTO, and returns it.
func autoChoice(t *testing.T) Backend {
	t.Helper()
	tr, err := Open(Config{Logf: t.Logf})
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	b := tr.Backend()
	tr.Close()
	if want := os.Getenv("TCPCONNECT_TEST_EXPECT_AUTO"); want != "" && string(b) != want {
		t.Fatalf("auto chose %s, want %s on this kernel", b, want)
	}
	return b
}

// TestAutoPrefersFirstWorking: auto takes the first backend, in the
// documented order, that this kernel can attach.
func TestAutoPrefersFirstWorking(t *testing.T) {
	testutil.RequirePrivileged(t)
	var want Backend
	for _, b := range Backends {
		if probe(b) == nil {
			want = b
			break
		}
	}
	if want == "" {
		t.Fatal("no backend can attach on this kernel")
	}
	if got := autoChoice(t); got != want {
		t.Errorf("auto chose %s, but %s is the first that attaches", got, want)
	}
}

func listen(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	return testutil.Listen(t, nil, network, addr)
}

// closedPort returns an address with a port that nothing listens on.
func closedPort(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// dial connects on a locked OS thread so that the TID and thread name are
// known, and returns that ground truth.
type dialed struct {
	pid, tid int
	uid      uint32
	comm     string
	sport    uint16
	err      unix.Errno
	before   time.Time
	after    time.Time
}

func dial(t testing.TB, ap netip.AddrPort) dialed {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d := dialed{pid: os.Getpid(), tid: unix.Gettid(), uid: uint32(os.Getuid()), before: time.Now()}
	d.comm = testutil.ThreadComm(t, d.tid)
	d.sport, d.err = testutil.ConnectRaw(ap)
	d.after = time.Now()
	return d
}

// check compares every field of e with the ground truth.
func check(t testing.TB, e event.Event, d dialed, saddr netip.Addr, dst netip.AddrPort) {
	t.Helper()
	fam := event.FamilyIPv4
	if dst.Addr().Is6() {
		fam = event.FamilyIPv6
	}
	if e.PID != uint32(d.pid) || e.TID != uint32(d.tid) || e.UID != d.uid ||
		string(e.CommBytes()) != d.comm || e.Family != fam ||
		e.Saddr != saddr || e.Sport != d.sport || e.Daddr != dst.Addr() || e.Dport != dst.Port() {
		t.Errorf("event %+v (comm %q)\nwant pid %d tid %d uid %d comm %q family %v %v:%d -> %v",
			e, e.CommBytes(), d.pid, d.tid, d.uid, d.comm, fam, saddr, d.sport, dst)
	}
	// The event's time is the SYN's: inside the connect() call.
	if e.Time.Before(d.before.Add(-time.Millisecond)) || e.Time.After(d.after.Add(time.Millisecond)) {
		t.Errorf("event time %v outside the connect() call [%v, %v]", e.Time, d.before, d.after)
	}
}

func bySport(sport, dport uint16) func(*event.Event) bool {
	return func(e *event.Event) bool { return e.Sport == sport && e.Dport == dport }
}

func byDport(dport uint16) func(*event.Event) bool {
	return func(e *event.Event) bool { return e.Dport == dport }
}

func TestLoopbackFields(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for _, tc := range []struct {
			name, network, listen string
			dst                   func(netip.AddrPort) netip.AddrPort
		}{
			{"ipv4", "tcp4", "127.0.0.1:0", nil},
			{"ipv6", "tcp6", "[::1]:0", nil},
			{"ipv4-mapped", "tcp4", "127.0.0.1:0", func(ap netip.AddrPort) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, outcomes := range []bool{false, true} {
					r := start(t, Config{Backend: b, Outcomes: outcomes})
					ap := listen(t, tc.network, tc.listen)
					if tc.dst != nil {
						ap = tc.dst(ap)
					}
					d := dial(t, ap)
					if d.err != 0 {
						t.Fatalf("connect %v: %v", ap, d.err)
					}
					e := r.wait(t, 2*time.Second, "connect to "+ap.String(), bySport(d.sport, ap.Port()))
					// The source address is the destination's on loopback.
					check(t, e, d, ap.Addr(), ap)
					if !outcomes {
						if e.Kind != event.KindAttempt || e.Result != event.ResultUnknown {
							t.Errorf("default mode: kind %v result %v, want an attempt", e.Kind, e.Result)
						}
					} else if e.Kind != event.KindOutcome || e.Result != event.ResultEstablished || e.Errno != 0 ||
						e.Latency <= 0 || e.Latency > d.after.Sub(d.before) {
						t.Errorf("outcome mode: kind %v result %v errno %v latency %v (connect took %v)",
							e.Kind, e.Result, e.Errno, e.Latency, d.after.Sub(d.before))
					}
					r.stop()
				}
			})
		}
	})
}

func TestRefusedHasRealSourcePort(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			cap := testutil.StartSYNCapture(t, nil)
			r := start(t, Config{Backend: b, Outcomes: true})
			ap := closedPort(t, "tcp", addr)
			d := dial(t, ap)
			if d.err != unix.ECONNREFUSED {
				t.Fatalf("connect %v: %v, want ECONNREFUSED", ap, d.err)
			}
			ports := cap.SourcePorts(ap, 2*time.Second)
			if len(ports) != 1 {
				t.Fatalf("captured SYN source ports %v, want one", ports)
			}
			d.sport = ports[0]
			e := r.wait(t, 2*time.Second, "refused connect to "+ap.String(), byDport(ap.Port()))
			check(t, e, d, ap.Addr(), ap)
			if e.Sport == 0 || e.Result != event.ResultRefused || e.Errno != unix.ECONNREFUSED {
				t.Errorf("refused: sport %d result %v errno %v", e.Sport, e.Result, e.Errno)
			}
			r.stop()
		}
	})
}

func TestBoundSourcePort(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		r := start(t, Config{Backend: b})
		ap := listen(t, "tcp4", "127.0.0.1:0")
		src := closedPort(t, "tcp4", "127.0.0.2:0")

		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, testutil.Sockaddr(src)); err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, testutil.Sockaddr(ap)); err != nil {
			t.Fatal(err)
		}
		e := r.wait(t, 2*time.Second, "bound connect", byDport(ap.Port()))
		if e.Saddr != src.Addr() || e.Sport != src.Port() {
			t.Errorf("bound to %v, event says %v:%d", src, e.Saddr, e.Sport)
		}
	})
}

// TestNetnsVeth connects across a veth pair between two namespaces made
// by the test, to a listener and to an address whose SYNs are dropped:
// the latter is reported at once, not after the timeout.
func TestNetnsVeth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		client, server := testutil.NewNetNS(t), testutil.NewNetNS(t)
		cliAddrs := []netip.Prefix{netip.MustParsePrefix("10.231.0.1/24"), netip.MustParsePrefix("fd00:231::1/64")}
		srvAddrs := []netip.Prefix{netip.MustParsePrefix("10.231.0.2/24"), netip.MustParsePrefix("fd00:231::2/64")}
		testutil.Veth(t, client, server, cliAddrs, srvAddrs)
		const dropPort = 9
		if _, err := server.DropSYN(dropPort); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{Backend: b})
		for i, srv := range srvAddrs {
			ap := testutil.Listen(t, server, "tcp", netip.AddrPortFrom(srv.Addr(), 0).String())
			var d dialed
			if err := client.Do(func() error {
				d = dial(t, ap)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if d.err != 0 {
				t.Fatalf("connect %v: %v", ap, d.err)
			}
			e := r.wait(t, 2*time.Second, "veth connect to "+ap.String(), bySport(d.sport, ap.Port()))
			check(t, e, d, cliAddrs[i].Addr(), ap)

			// A non-blocking connect whose SYN is dropped: the event
			// must come while the handshake is still pending.
			dropped := netip.AddrPortFrom(srv.Addr(), dropPort)
			var fd int
			if err := client.Do(func() error {
				var err error
				fd, err = unix.Socket(familyOf(dropped), unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
				if err != nil {
					return err
				}
				if err := unix.Connect(fd, testutil.Sockaddr(dropped)); err != unix.EINPROGRESS {
					return err
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			e = r.wait(t, 500*time.Millisecond, "unanswered connect to "+dropped.String(), func(e *event.Event) bool {
				return e.Daddr == dropped.Addr() && e.Dport == dropPort
			})
			if e.Saddr != cliAddrs[i].Addr() || e.Daddr != dropped.Addr() || e.Sport == 0 {
				t.Errorf("unanswered attempt: %+v", e)
			}
			// The namespace: its inode, and its cookie as the socket
			// itself reports it (SO_NETNS_COOKIE).
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(e.NetnsIno) != client.Inode() || e.NetnsCookie != cookie {
				t.Errorf("netns inode %d cookie %d, want %d and %d", e.NetnsIno, e.NetnsCookie, client.Inode(), cookie)
			}
			t.Logf("unanswered attempt reported %v after connect()", time.Since(began))
			unix.Close(fd)
		}
	})
}

func familyOf(ap netip.AddrPort) int {
	if ap.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func TestFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		v4 := listen(t, "tcp4", "127.0.0.1:0")
		v4b := listen(t, "tcp4", "127.0.0.1:0")
		v4c := listen(t, "tcp4", "127.0.0.1:0")
		v6 := listen(t, "tcp6", "[::1]:0")

		t.Run("pid", func(t *testing.T) {
			// Ours is excluded, the child's included: filter on a PID we
			// learn only after the child ran would be too late, so filter
			// on our own PID and check a child's connect is excluded.
			r := start(t, Config{Backend: b, PID: uint32(os.Getpid())})
			child := testutil.ConnectFromChild(t, v4, testutil.ChildOptions{})
			d := dial(t, v4)
			r.wait(t, 2*time.Second, "own connect", bySport(d.sport, v4.Port()))
			r.none(t, 200*time.Millisecond, "child's connect", bySport(child.Sport, v4.Port()))
		})
		t.Run("uid", func(t *testing.T) {
			r := start(t, Config{Backend: b, UIDFilter: true, UID: 65534})
			child := testutil.ConnectFromChild(t, v4, testutil.ChildOptions{UID: 65534})
			d := dial(t, v4)
			e := r.wait(t, 2*time.Second, "uid 65534 connect", bySport(child.Sport, v4.Port()))
			if e.UID != 65534 || e.PID != uint32(child.PID) {
				t.Errorf("uid filter event %+v, child %+v", e, child)
			}
			r.none(t, 200*time.Millisecond, "root's connect", bySport(d.sport, v4.Port()))
		})
		t.Run("ports", func(t *testing.T) {
			r := start(t, Config{Backend: b, Ports: []uint16{v4.Port(), v4b.Port()}})
			d1, d2, d3 := dial(t, v4), dial(t, v4b), dial(t, v4c)
			r.wait(t, 2*time.Second, "first port", bySport(d1.sport, v4.Port()))
			r.wait(t, 2*time.Second, "second port", bySport(d2.sport, v4b.Port()))
			r.none(t, 200*time.Millisecond, "unlisted port", bySport(d3.sport, v4c.Port()))
		})
		t.Run("ipv4", func(t *testing.T) {
			r := start(t, Config{Backend: b, Family: event.FamilyIPv4})
			d6, d4 := dial(t, v6), dial(t, v4)
			r.wait(t, 2*time.Second, "ipv4 connect", bySport(d4.sport, v4.Port()))
			r.none(t, 200*time.Millisecond, "ipv6 connect", bySport(d6.sport, v6.Port()))
		})
		t.Run("ipv6", func(t *testing.T) {
			r := start(t, Config{Backend: b, Family: event.FamilyIPv6})
			d4, d6 := dial(t, v4), dial(t, v6)
			r.wait(t, 2*time.Second, "ipv6 connect", bySport(d6.sport, v6.Port()))
			r.none(t, 200*time.Millisecond, "ipv4 connect", bySport(d4.sport, v4.Port()))
		})
		t.Run("count", func(t *testing.T) {
			const n = 57
			r := start(t, Config{Backend: b, Count: true, Ports: []uint16{v4.Port(), v6.Port()}})
			for range n {
				dial(t, v4)
			}
			dial(t, v6)
			counts, err := r.Counts()
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint16]uint64{}
			for _, c := range counts {
				if got[c.Dport] != 0 {
					t.Errorf("two count rows for port %d: the key holds bytes that differ between attempts (%+v)", c.Dport, counts)
				}
				got[c.Dport] += c.Connects
				if c.Saddr != c.Daddr {
					t.Errorf("count row %+v: loopback source should equal destination", c)
				}
			}
			if got[v4.Port()] != n || got[v6.Port()] != 1 || len(got) != 2 {
				t.Errorf("counts %v, want %d to %d and 1 to %d", got, n, v4.Port(), v6.Port())
			}
			if len(r.snapshot()) != 0 {
				t.Errorf("count mode sent %d records", len(r.snapshot()))
			}
		})
	})
}

// TestBurst makes many connects from several goroutines: every one is
// reported, or the loss counter says exactly how many are missing.
func TestBurst(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		const workers, perWorker = 8, 2500
		ap := listen(t, "tcp4", "127.0.0.1:0")
		r := start(t, Config{Backend: b, Ports: []uint16{ap.Port()}})
		var wg sync.WaitGroup
		var mu sync.Mutex
		sports := map[uint16]int{}
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWorker {
					sport, err := testutil.ConnectRaw(ap)
					if err != 0 {
						t.Errorf("connect: %v", err)
						return
					}
					mu.Lock()
					sports[sport]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		r.stop() // drains the ring buffer
		seen := map[uint16]int{}
		for _, e := range r.snapshot() {
			seen[e.Sport]++
		}
		st, err := r.Stats()
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for sport, n := range sports {
			if seen[sport] < n {
				missing += n - seen[sport]
			}
		}
		total := workers * perWorker
		t.Logf("%d connects, %d events, %d missing, %d lost by the kernel's count, %d wakeups",
			total, len(r.snapshot()), missing, st.LostEvents, st.Wakeups)
		if len(r.snapshot()) > total {
			t.Errorf("%d events for %d connects", len(r.snapshot()), total)
		}
		if uint64(missing) != st.LostEvents {
			t.Errorf("%d connects missing but the loss counter says %d", missing, st.LostEvents)
		}
	})
}

var errStop = errors.New("stop")

// failingSink makes Run return its error: Run must end, not spin.
type failingSink struct{}

func (failingSink) Event(*event.Event) error { return errStop }
func (failingSink) Flush() error             { return nil }

func TestRunEndsOnSinkError(t *testing.T) {
	testutil.RequirePrivileged(t)
	tr, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ap := listen(t, "tcp4", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- tr.Run(context.Background(), failingSink{}) }()
	dial(t, ap)
	select {
	case err := <-done:
		if !errors.Is(err, errStop) {
			t.Errorf("Run returned %v, want the sink's error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after the sink failed")
	}
}
