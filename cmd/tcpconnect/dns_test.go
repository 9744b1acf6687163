// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
)

// zone answers the test's names; the TTL of short.test is 1 s.
var zone = map[string][]string{
	"web.test.":   {"web.test. 60 IN A 10.240.0.2", "web.test. 60 IN AAAA fd00:240::2"},
	"alias.test.": {"alias.test. 60 IN CNAME edge.cdn.test.", "edge.cdn.test. 30 IN A 10.240.0.3"},
	"short.test.": {"short.test. 1 IN A 10.240.0.4"},
	"stub.test.":  {"stub.test. 60 IN A 10.240.0.5"},
	"steer.test.": {"steer.test. 60 IN A 127.0.0.1"},
}

func serveZone(w dns.ResponseWriter, q *dns.Msg) {
	r := new(dns.Msg)
	r.SetReply(q)
	for _, s := range zone[strings.ToLower(q.Question[0].Name)] {
		rr, _ := dns.NewRR(s)
		if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME ||
			q.Question[0].Qtype == dns.TypeA && rr.Header().Rrtype == dns.TypeA {
			r.Answer = append(r.Answer, rr)
		}
	}
	_ = w.WriteMsg(r)
}

// startDNS serves the zone on addr (UDP and TCP) inside ns.
func startDNS(t *testing.T, ns *testutil.NetNS, addr string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Net: network, Handler: dns.HandlerFunc(serveZone)}
		if err := ns.Do(func() error {
			var err error
			if network == "udp" {
				srv.PacketConn, err = net.ListenPacket("udp", addr)
			} else {
				srv.Listener, err = net.Listen("tcp", addr)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
}

// TestDNSNames: -d shows the name that the client resolved, through a
// real DNS server in a namespace of the test, over UDP and TCP, IPv4 and
// IPv6, through a CNAME chain and a loopback stub resolver; an expired
// answer and an address never looked up show nothing.
func TestDNSNames(t *testing.T) {
	testutil.RequirePrivileged(t)
	client, server := testutil.NewNetNS(t), testutil.NewNetNS(t)
	var srvAddrs []netip.Prefix
	for _, a := range []string{"10.240.0.2/24", "10.240.0.3/24", "10.240.0.4/24", "10.240.0.5/24", "10.240.0.6/24", "fd00:240::2/64"} {
		srvAddrs = append(srvAddrs, netip.MustParsePrefix(a))
	}
	testutil.Veth(t, client, server,
		[]netip.Prefix{netip.MustParsePrefix("10.240.0.1/24"), netip.MustParsePrefix("fd00:240::1/64")}, srvAddrs)
	startDNS(t, server, "10.240.0.2:53")
	startDNS(t, client, "127.0.0.53:53") // like systemd-resolved's stub

	// One port for every service address: a listener on the wildcard.
	port := testutil.Listen(t, server, "tcp", "[::]:0").Port()

	p := startTool(t, "-d", "--json", "-P", strconv.Itoa(int(port)))

	resolve := func(server, network, name string, qtype uint16) netip.Addr {
		t.Helper()
		var addr netip.Addr
		if err := client.Do(func() error {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, server)
			if err != nil {
				return err
			}
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					addr, _ = netip.AddrFromSlice(rr.A.To4())
				case *dns.AAAA:
					addr, _ = netip.AddrFromSlice(rr.AAAA)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("resolving %s over %s: %v", name, network, err)
		}
		if !addr.IsValid() {
			t.Fatalf("no address for %s", name)
		}
		return addr
	}
	connect := func(addr netip.Addr) map[string]any {
		t.Helper()
		var sport uint16
		if err := client.Do(func() error {
			var errno syscall.Errno
			sport, errno = testutil.ConnectRaw(netip.AddrPortFrom(addr, port))
			if errno != 0 {
				return errno
			}
			return nil
		}); err != nil {
			t.Fatalf("connect %v: %v", addr, err)
		}
		return decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport)))
	}
	for _, tc := range []struct {
		server, network, name string
		qtype                 uint16
		want                  any
	}{
		{"10.240.0.2:53", "udp", "web.test.", dns.TypeA, "web.test"},
		{"10.240.0.2:53", "tcp", "web.test.", dns.TypeAAAA, "web.test"},
		{"10.240.0.2:53", "udp", "alias.test.", dns.TypeA, "alias.test"},
		{"127.0.0.53:53", "udp", "stub.test.", dns.TypeA, "stub.test"},
	} {
		addr := resolve(tc.server, tc.network, tc.name, tc.qtype)
		if ev := connect(addr); ev["daddr_name"] != tc.want {
			t.Errorf("%s over %s via %s: daddr_name %v, want %v", tc.name, tc.network, tc.server, ev["daddr_name"], tc.want)
		}
	}
	short := resolve("10.240.0.2:53", "udp", "short.test.", dns.TypeA)
	time.Sleep(3 * time.Second)
	if ev := connect(short); ev["daddr_name"] != nil {
		t.Errorf("expired name still shown: %v", ev["daddr_name"])
	}
	if ev := connect(netip.MustParseAddr("10.240.0.6")); ev["daddr_name"] != nil {
		t.Errorf("never looked up, but named %v", ev["daddr_name"])
	}
	// web.test was resolved in the client's network namespace only: the
	// same address dialled from the server's namespace has no name.
	var sport uint16
	if err := server.Do(func() error {
		var errno syscall.Errno
		sport, errno = testutil.ConnectRaw(netip.AddrPortFrom(netip.MustParseAddr("10.240.0.2"), port))
		if errno != 0 {
			return errno
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ev := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport))); ev["daddr_name"] != nil {
		t.Errorf("a name resolved in another network namespace: %v", ev["daddr_name"])
	}
	p.stop(t, syscall.SIGINT)
}

// TestDNSNameDiesWithItsNamespace: a name resolved in a network
// namespace that is gone is not shown for connects from a new namespace
// that got the same inode number (the kernel hands out the lowest free
// one, so the next container often gets a number that was just freed).
// Names are keyed by the namespace's cookie, which is never reused.
func TestDNSNameDiesWithItsNamespace(t *testing.T) {
	testutil.RequirePrivileged(t)
	const port = 9 // nothing listens: refused, but the attempt shows
	p := startTool(t, "-d", "--json", "-P", strconv.Itoa(port))
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	connect := func(ns *testutil.NetNS) map[string]any {
		t.Helper()
		var sport uint16
		if err := ns.Do(func() error {
			sport, _ = testutil.ConnectRaw(target)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,"daddr":"127.0.0.1","dport":%d`, sport, port)))
	}

	// In namespace a: steer.test is 127.0.0.1, served and asked inside a.
	a := testutil.NewNetNS(t)
	oldIno := a.Inode()
	srv := &dns.Server{Net: "udp", Handler: dns.HandlerFunc(serveZone)}
	if err := a.Do(func() error {
		var err error
		srv.PacketConn, err = net.ListenPacket("udp", "127.0.0.1:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go srv.ActivateAndServe()
	if err := a.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion("steer.test.", dns.TypeA)
		_, _, err := (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(m, "127.0.0.1:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ev := connect(a); ev["daddr_name"] != "steer.test" {
		t.Fatalf("in the namespace that resolved it: daddr_name %v, want steer.test", ev["daddr_name"])
	}
	// Namespace a goes: its last socket closed, its fd released.
	srv.Shutdown()
	a.Close()

	// New namespaces until one gets a's inode number: lower free numbers
	// are taken and held; a's comes back once the kernel has freed it.
	var b *testutil.NetNS
	// Other tests (packages run in parallel) may hold the number a while.
	for deadline := time.Now().Add(45 * time.Second); b == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no new network namespace got inode %d back within 45 s", oldIno)
		}
		n := testutil.NewNetNS(t)
		switch {
		case n.Inode() == oldIno:
			b = n
		case n.Inode() > oldIno:
			n.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ev := connect(b); ev["daddr_name"] != nil {
		t.Errorf("a new namespace with the inode of one that is gone shows its name: %v", ev["daddr_name"])
	}
	p.stop(t, syscall.SIGINT)
}
