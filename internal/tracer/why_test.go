// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/sys/unix"
)

// synRetries is net.ipv4.tcp_syn_retries in the tests' client namespaces:
// small, so that a timeout takes 7 s (SYN, retransmissions after 1 and 3
// s, give up at 7 s), and above 1, so that the count means something.
const synRetries = 2

// fewSYNs makes ns's connects give up after synRetries retransmissions.
// Kernels since 6.5 retransmit the first tcp_syn_linear_timeouts (4) SYNs
// after a fixed 1 s and count tcp_syn_retries in time, not in SYNs: with
// linear timeouts off, the SYNs sent are 1 + tcp_syn_retries again.
func fewSYNs(t *testing.T, ns *testutil.NetNS) {
	t.Helper()
	if err := ns.Sysctl("net.ipv4.tcp_syn_retries", strconv.Itoa(synRetries)); err != nil {
		t.Fatal(err)
	}
	if err := ns.Sysctl("net.ipv4.tcp_syn_linear_timeouts", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// checkWhy compares e.Why with the ground truth.
func checkWhy(t *testing.T, e event.Event, want event.Why) {
	t.Helper()
	if e.Why != want {
		t.Errorf("attempt %v:%d -> %v:%d (%v): why %+v, want %+v", e.Saddr, e.Sport, e.Daddr, e.Dport, e.Result, e.Why, want)
	}
}

// TestWhyNAT: a DNAT rule in the client's OUTPUT path sends a virtual
// address and port to a listener, and another to a closed port. The
// attempt keeps the dialled address; the real one is the NAT destination.
func TestWhyNAT(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		l := newLab(t)
		// Only the client's attempts: a busy host's connects would bury
		// them.
		r := start(t, Config{Backend: b, Outcomes: true, Why: true, Netns: uint32(l.client.Inode())})
		// Virtual addresses in the connected subnet: the route lookup
		// before the nat hook finds the veth.
		vip := [2]netip.Addr{netip.MustParseAddr("10.232.0.100"), netip.MustParseAddr("fd00:232::100")}
		for _, f := range fams() {
			t.Run(f.name, func(t *testing.T) {
				real := l.listen(t, l.srv[f.i])
				closed := netip.AddrPortFrom(l.srv[f.i], real.Port()+1)
				virt := netip.AddrPortFrom(vip[f.i], 80)
				virtClosed := netip.AddrPortFrom(vip[f.i], 81)
				for from, to := range map[netip.AddrPort]netip.AddrPort{virt: real, virtClosed: closed} {
					if _, err := l.client.DNAT(from, to); err != nil {
						t.Fatal(err)
					}
				}

				d := l.dial(t, virt)
				if d.err != 0 {
					t.Fatalf("connect to %v: %v", virt, d.err)
				}
				e := expectOutcome(t, r, virt, d.sport, event.ResultEstablished, 0)
				check(t, e, d, l.cli[f.i], virt)
				checkWhy(t, e, event.Why{NatDaddr: real.Addr(), NatDport: real.Port()})

				d = l.dial(t, virtClosed)
				if d.err != unix.ECONNREFUSED {
					t.Fatalf("connect to %v: %v", virtClosed, d.err)
				}
				e = expectOutcome(t, r, virtClosed, d.sport, event.ResultRefused, unix.ECONNREFUSED)
				checkWhy(t, e, event.Why{NatDaddr: closed.Addr(), NatDport: closed.Port()})

				// Untranslated: no NAT address.
				d = l.dial(t, real)
				e = expectOutcome(t, r, real, d.sport, event.ResultEstablished, 0)
				checkWhy(t, e, event.Why{})
			})
		}
	})
}

// TestWhyDrops: SYNs dropped by an nftables OUTPUT rule of the client
// (timeout, NETFILTER_DROP, every SYN counted), and SYNs dropped by the
// peer (timeout, retransmissions, no local reason).
func TestWhyDrops(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		l := newLab(t)
		fewSYNs(t, l.client)
		const localDrop, peerDrop = 9, 10
		if _, err := l.client.DropOutputSYN(localDrop); err != nil {
			t.Fatal(err)
		}
		if _, err := l.server.DropSYN(peerDrop); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{Backend: b, Outcomes: true, Why: true, Netns: uint32(l.client.Inode())})
		// The same attempts, counted in the kernel for the metrics.
		km := start(t, Config{Backend: b, Outcomes: true, Why: true, KernelMetrics: true, Netns: uint32(l.client.Inode())})
		t.Run("attempts", func(t *testing.T) {
			whyDrops(t, l, r, localDrop, peerDrop)
		})
		m, err := km.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		drops := map[string]uint64{}
		for _, o := range m.Outcomes {
			if o.DropReason != "" {
				drops[o.Result.String()+"/"+o.DropReason] += o.Count
			}
		}
		// Both families' locally dropped attempts, and only those.
		if len(drops) != 1 || drops["timeout/NETFILTER_DROP"] != 2 {
			t.Errorf("kernel counts by drop reason %v, want timeout/NETFILTER_DROP: 2", drops)
		}
		// Every attempt of the namespace ended: the gate of the packet
		// hooks is closed again.
		var pending uint64
		if err := km.objs.shared.Pending.Get(&pending); err != nil {
			t.Fatal(err)
		}
		if pending != 0 {
			t.Errorf("pending_attempts %d after every attempt ended", pending)
		}
	})
}

// whyDrops dials the dropping ports of TestWhyDrops from both families
// at once.
func whyDrops(t *testing.T, l *lab, r *running, localDrop, peerDrop uint16) {
	for _, f := range fams() {
		for _, c := range []struct {
			name string
			port uint16
			why  event.Why
		}{
			{"local", localDrop, event.Why{SynRetransmits: synRetries, DropReason: "NETFILTER_DROP"}},
			{"peer", peerDrop, event.Why{SynRetransmits: synRetries}},
		} {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				ap := netip.AddrPortFrom(l.srv[f.i], c.port)
				d := l.dial(t, ap)
				if d.err != unix.ETIMEDOUT {
					t.Fatalf("connect to %v: %v", ap, d.err)
				}
				e := expectOutcome(t, r, ap, d.sport, event.ResultTimeout, unix.ETIMEDOUT)
				checkWhy(t, e, c.why)
			})
		}
	}
}

// TestWhyICMP: a router namespace between client and server rejects the
// SYN with an ICMP host-unreachable from its own address.
func TestWhyICMP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		client, router, server := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
		p := netip.MustParsePrefix
		cli := [2]netip.Prefix{p("10.237.1.1/24"), p("fd00:237:1::1/64")}
		rtrCli := [2]netip.Prefix{p("10.237.1.254/24"), p("fd00:237:1::fe/64")}
		rtrSrv := [2]netip.Prefix{p("10.237.2.254/24"), p("fd00:237:2::fe/64")}
		srv := [2]netip.Prefix{p("10.237.2.1/24"), p("fd00:237:2::1/64")}
		cliIf, _ := testutil.Veth(t, client, router, cli[:], rtrCli[:])
		_, srvIf := testutil.Veth(t, router, server, rtrSrv[:], srv[:])
		for i := range 2 {
			if err := client.AddRouteVia(rtrSrv[i].Masked(), rtrCli[i].Addr(), cliIf); err != nil {
				t.Fatal(err)
			}
			if err := server.AddRouteVia(rtrCli[i].Masked(), rtrSrv[i].Addr(), srvIf); err != nil {
				t.Fatal(err)
			}
		}
		const port = 12
		if _, err := router.RejectForwardICMP(port); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{Backend: b, Outcomes: true, Why: true, Netns: uint32(client.Inode())})
		lab := &lab{client: client, server: server}
		for _, f := range fams() {
			t.Run(f.name, func(t *testing.T) {
				// The path through the router works.
				ok := lab.listen(t, srv[f.i].Addr())
				if d := lab.dial(t, ok); d.err != 0 {
					t.Fatalf("connect through the router to %v: %v", ok, d.err)
				}

				ap := netip.AddrPortFrom(srv[f.i].Addr(), port)
				d := lab.dial(t, ap)
				if d.err != unix.EHOSTUNREACH {
					t.Fatalf("connect to %v: %v", ap, d.err)
				}
				e := expectOutcome(t, r, ap, d.sport, event.ResultUnreachable, unix.EHOSTUNREACH)
				// nft's icmpx host-unreachable: IPv4 type 3 code 1,
				// ICMPv6 type 1 code 3.
				typ, code := [2]uint8{3, 1}, [2]uint8{1, 3}
				want := event.Why{ICMP: true, ICMPType: typ[f.i], ICMPCode: code[f.i], ICMPFrom: rtrCli[f.i].Addr()}
				// The retransmitted SYN may have been answered too.
				want.SynRetransmits = e.Why.SynRetransmits
				if e.Why.SynRetransmits > 1 {
					t.Errorf("%d SYN retransmissions before the ICMP error ended the attempt", e.Why.SynRetransmits)
				}
				checkWhy(t, e, want)
			})
		}
	})
}

// TestWhyICMPNotForged: an ICMP error counts for an attempt only where the
// kernel believes it. Three attempts wait in SYN_SENT (their SYNs are
// dropped at the server); each gets an error that quotes its SYN: one
// received in another network namespace, with the SYN's tuple and
// sequence number exactly (anyone can inject packets into a namespace of
// their own), one in the client's namespace with a sequence number the
// socket never sent (the kernel ignores it), and one as a router sends it.
// Only the last one ends its attempt and shows; the other two are aborted
// by the test with no ICMP in their why.
func TestWhyICMPNotForged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		l := newLab(t)
		other := testutil.NewNetNS(t)
		const port = 13
		if _, err := l.server.DropSYN(port); err != nil {
			t.Fatal(err)
		}
		capture := testutil.StartSYNCapture(t, l.client)
		r := start(t, Config{Backend: b, Outcomes: true, Why: true, Netns: uint32(l.client.Inode())})
		loopback := [2]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
		for _, f := range fams() {
			t.Run(f.name, func(t *testing.T) {
				dst := netip.AddrPortFrom(l.srv[f.i], port)
				// attempt starts a connect and sends, from ns to the
				// address to, an error quoting its SYN with the SYN's
				// sequence number plus seqOffset.
				attempt := func(ns *testutil.NetNS, to netip.Addr, seqOffset uint32) (int, uint16) {
					fd, sport := l.startConnect(t, dst)
					isn, ok := capture.ISN(dst, sport, 5*time.Second)
					if !ok {
						t.Fatalf("no SYN seen from port %d to %v", sport, dst)
					}
					src := netip.AddrPortFrom(l.cli[f.i], sport)
					if err := ns.SendICMPUnreachable(to, src, dst, isn+seqOffset); err != nil {
						t.Fatal(err)
					}
					return fd, sport
				}
				fdOther, sportOther := attempt(other, loopback[f.i], 0)
				fdSeq, sportSeq := attempt(l.client, l.cli[f.i], 1<<20)
				fdReal, sportReal := attempt(l.client, l.cli[f.i], 0)
				defer unix.Close(fdReal)

				// The kernel believes the last one: the attempt ends.
				e := expectOutcome(t, r, dst, sportReal, event.ResultUnreachable, unix.EHOSTUNREACH)
				typ, code := [2]uint8{3, 1}, [2]uint8{1, 3}
				checkWhy(t, e, event.Why{ICMP: true, ICMPType: typ[f.i], ICMPCode: code[f.i], ICMPFrom: l.cli[f.i],
					SynRetransmits: e.Why.SynRetransmits})
				// The other two errors were sent before it; the client
				// kernel ignored them, and so must we.
				for _, a := range []struct {
					what  string
					fd    int
					sport uint16
				}{{"error received in another namespace", fdOther, sportOther}, {"error with a wrong sequence number", fdSeq, sportSeq}} {
					if err := unix.Close(a.fd); err != nil {
						t.Fatal(err)
					}
					e := expectOutcome(t, r, dst, a.sport, event.ResultAborted, 0)
					if e.Why.ICMP {
						t.Errorf("%s: shown as the attempt's ICMP error: %+v", a.what, e.Why)
					}
					checkWhy(t, e, event.Why{SynRetransmits: e.Why.SynRetransmits})
				}
			})
		}
	})
}

// TestWhyInboundSYNIsNotOurs: the socket of an attempt also owns
// incoming segments with its tuple (early demux), so a SYN sent to it
// from the peer's address and port — anyone who knows the tuple can — and
// dropped by this host is not the attempt's SYN: it must not count as a
// retransmission nor give the attempt a drop reason. The client drops
// incoming SYNs to the attempt's port; its own SYN is dropped at the
// server, so the attempt waits until the test closes it.
func TestWhyInboundSYNIsNotOurs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		l := newLab(t)
		const port = 14
		if _, err := l.server.DropSYN(port); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{Backend: b, Outcomes: true, Why: true, Netns: uint32(l.client.Inode())})
		for _, f := range fams() {
			t.Run(f.name, func(t *testing.T) {
				dst := netip.AddrPortFrom(l.srv[f.i], port)
				fd, sport := l.startConnect(t, dst)
				remove, err := l.client.DropSYN(sport)
				if err != nil {
					t.Fatal(err)
				}
				defer remove()
				for range 3 {
					if err := l.server.SendSYN(dst, netip.AddrPortFrom(l.cli[f.i], sport)); err != nil {
						t.Fatal(err)
					}
				}
				// Sent and dropped in softirq before SendSYN returns, as a
				// rule; a moment more for a CPU that was busy.
				time.Sleep(100 * time.Millisecond)
				if err := unix.Close(fd); err != nil {
					t.Fatal(err)
				}
				e := expectOutcome(t, r, dst, sport, event.ResultAborted, 0)
				checkWhy(t, e, event.Why{})
			})
		}
	})
}
