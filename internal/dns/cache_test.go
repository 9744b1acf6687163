// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

var (
	server = netip.MustParseAddrPort("192.0.2.53:53")
	// The socket that asks, and who owns it.
	sock = event.DNSMessage{Socket: 7, Netns: 4026531840, UID: 1000, Server: server}
)

// query returns a query message for name and type, with id.
func query(t testing.TB, id uint16, name string, qtype uint16) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reply answers the query q with rrs.
func reply(t testing.TB, q []byte, rrs ...string) []byte {
	t.Helper()
	var m dns.Msg
	if err := m.Unpack(q); err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	r.SetReply(&m)
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	b, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ask has sock send q and receive a, as the tracer would report them.
func ask(t testing.TB, c *Cache, q, a []byte) error {
	t.Helper()
	m := sock
	m.Query, m.Msg = true, q
	if err := c.Observe(&m); err != nil {
		t.Fatalf("query: %v", err)
	}
	m.Query, m.Msg = false, a
	return c.Observe(&m)
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func lookup(c *Cache, addr string) (string, bool) {
	return c.Lookup(sock.Netns, sock.UID, netip.MustParseAddr(addr))
}

func TestCNAMEChainAndTTL(t *testing.T) {
	c := NewCache(10)
	clk := &clock{t: time.Unix(1000, 0)}
	c.now = clk.now
	q := query(t, 1, "www.example.test.", dns.TypeA)
	a := reply(t, q,
		"www.example.test. 300 IN CNAME edge.cdn.test.",
		"edge.cdn.test. 60 IN CNAME e1.cdn.test.",
		"e1.cdn.test. 120 IN A 192.0.2.7",
		"e1.cdn.test. 120 IN AAAA 2001:db8::7")
	if err := ask(t, c, q, a); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7"} {
		if name, ok := lookup(c, a); !ok || name != "www.example.test" {
			t.Errorf("Lookup(%s) = %q %v", a, name, ok)
		}
	}
	// The chain's smallest TTL (60 s) bounds the entry.
	clk.t = clk.t.Add(61 * time.Second)
	if name, ok := lookup(c, "192.0.2.7"); ok {
		t.Errorf("expired entry still answers %q", name)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d after one expiry", c.Len())
	}
}

// TestNamesStayWithTheirAsker: a name names connects of the asking
// socket's network namespace and user only.
func TestNamesStayWithTheirAsker(t *testing.T) {
	c := NewCache(10)
	q := query(t, 2, "bank.test.", dns.TypeA)
	if err := ask(t, c, q, reply(t, q, "bank.test. 60 IN A 198.51.100.9")); err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("198.51.100.9")
	if name, ok := c.Lookup(sock.Netns, sock.UID, addr); !ok || name != "bank.test" {
		t.Fatalf("asker's own lookup: %q %v", name, ok)
	}
	if name, ok := c.Lookup(sock.Netns+1, sock.UID, addr); ok {
		t.Errorf("another network namespace sees %q", name)
	}
	if name, ok := c.Lookup(sock.Netns, 0, addr); ok {
		t.Errorf("another user (root) sees %q", name)
	}
}

// TestOnlyAnswersToQueries: answers that do not answer a query of the
// socket, from the server it asked, with its ID and question, within the
// query's lifetime, name nothing.
func TestOnlyAnswersToQueries(t *testing.T) {
	q := query(t, 0x1234, "www.bank.test.", dns.TypeA)
	good := reply(t, q, "www.bank.test. 60 IN A 127.0.0.1")
	wrongID := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(wrongID, 0x1235)
	otherName := reply(t, query(t, 0x1234, "www.other.test.", dns.TypeA), "www.other.test. 60 IN A 127.0.0.1")
	otherType := reply(t, query(t, 0x1234, "www.bank.test.", dns.TypeAAAA), "www.bank.test. 60 IN A 127.0.0.1")

	for _, tc := range []struct {
		name  string
		ask   bool // the socket sent q first
		tweak func(m *event.DNSMessage, c *Cache, clk *clock)
		ans   []byte
	}{
		{"unsolicited", false, nil, good},
		{"wrong ID", true, nil, wrongID},
		{"other question name", true, nil, otherName},
		{"other question type", true, nil, otherType},
		{"other server address", true, func(m *event.DNSMessage, _ *Cache, _ *clock) {
			m.Server = netip.MustParseAddrPort("192.0.2.54:53")
		}, good},
		{"other server port", true, func(m *event.DNSMessage, _ *Cache, _ *clock) {
			m.Server = netip.AddrPortFrom(server.Addr(), 5353)
		}, good},
		{"other socket", true, func(m *event.DNSMessage, _ *Cache, _ *clock) { m.Socket++ }, good},
		{"other namespace", true, func(m *event.DNSMessage, _ *Cache, _ *clock) { m.Netns++ }, good},
		{"too late", true, func(_ *event.DNSMessage, _ *Cache, clk *clock) {
			clk.t = clk.t.Add(QueryLifetime)
		}, good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(10)
			clk := &clock{t: time.Unix(1000, 0)}
			c.now = clk.now
			m := sock
			if tc.ask {
				m.Query, m.Msg = true, q
				if err := c.Observe(&m); err != nil {
					t.Fatal(err)
				}
			}
			m.Query, m.Msg = false, tc.ans
			if tc.tweak != nil {
				tc.tweak(&m, c, clk)
			}
			if err := c.Observe(&m); !errors.Is(err, ErrUnsolicited) {
				t.Errorf("Observe = %v, want ErrUnsolicited", err)
			}
			for _, netns := range []uint64{sock.Netns, m.Netns} {
				if name, ok := c.Lookup(netns, sock.UID, netip.MustParseAddr("127.0.0.1")); ok {
					t.Errorf("named %q", name)
				}
			}
			if seen, _, dropped := c.Counts(); dropped != 1 || seen != 2 && tc.ask || seen != 1 && !tc.ask {
				t.Errorf("seen %d messages, dropped %d answers, want 1", seen, dropped)
			}
		})
	}
}

// TestOneAnswerPerQuery: the first answer wins; a second one (a spoofer
// racing the server, or the reverse) names nothing.
func TestOneAnswerPerQuery(t *testing.T) {
	c := NewCache(10)
	q := query(t, 9, "race.test.", dns.TypeA)
	if err := ask(t, c, q, reply(t, q, "race.test. 60 IN A 192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	m := sock
	m.Msg = reply(t, q, "race.test. 60 IN A 192.0.2.2")
	if err := c.Observe(&m); !errors.Is(err, ErrUnsolicited) {
		t.Errorf("second answer: %v", err)
	}
	if _, ok := lookup(c, "192.0.2.2"); ok {
		t.Error("second answer named an address")
	}
	if name, _ := lookup(c, "192.0.2.1"); name != "race.test" {
		t.Errorf("first answer lost: %q", name)
	}
}

func TestTCPFraming(t *testing.T) {
	c := NewCache(10)
	frame := func(msgs ...[]byte) []byte {
		var seg []byte
		for _, m := range msgs {
			seg = binary.BigEndian.AppendUint16(seg, uint16(len(m)))
			seg = append(seg, m...)
		}
		return seg
	}
	// Two queries in one segment (A and AAAA), their answers in another.
	q4, q6 := query(t, 1, "tcp.test.", dns.TypeA), query(t, 2, "tcp.test.", dns.TypeAAAA)
	m := sock
	m.TCP, m.Query, m.Msg = true, true, frame(q4, q6)
	if err := c.Observe(&m); err != nil {
		t.Fatal(err)
	}
	m.Query, m.Msg = false, frame(reply(t, q4, "tcp.test. 30 IN A 198.51.100.1"), reply(t, q6, "tcp.test. 30 IN AAAA 2001:db8::1"))
	if err := c.Observe(&m); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"198.51.100.1", "2001:db8::1"} {
		if name, _ := lookup(c, a); name != "tcp.test" {
			t.Errorf("TCP answer for %s not cached: %q", a, name)
		}
	}
	q := query(t, 3, "split.test.", dns.TypeA)
	m.Query, m.Msg = true, frame(q)
	if err := c.Observe(&m); err != nil {
		t.Fatal(err)
	}
	seg := frame(reply(t, q, "split.test. 30 IN A 198.51.100.2"))
	m.Query, m.Msg = false, seg[:len(seg)-3]
	if err := c.Observe(&m); err == nil {
		t.Error("partial TCP message accepted")
	}
	if _, ok := lookup(c, "198.51.100.2"); ok {
		t.Error("partial TCP message named an address")
	}
}

func TestIgnoresGarbage(t *testing.T) {
	c := NewCache(10)
	for _, b := range [][]byte{[]byte("\x00\x01garbage that is not dns"), nil, make([]byte, 12)} {
		m := sock
		m.Msg = b
		if err := c.Observe(&m); err == nil {
			t.Errorf("garbage %q accepted", b)
		}
	}
	if c.Len() != 0 {
		t.Errorf("garbage made %d names", c.Len())
	}
}

// TestNameEscapedOnce: a label's control byte is kept as the byte it was
// on the wire, for the output to escape once in its own style (not
// miekg/dns's \DDD, which the output would escape again).
func TestNameEscapedOnce(t *testing.T) {
	for in, want := range map[string]string{
		`a\023b.test.`:  "a\x17b.test",
		`x\.y.test.`:    "x.y.test",
		`back\\.test.`:  `back\.test`,
		`plain.test.`:   "plain.test",
		`\255\000.`:     "\xff\x00",
		`trailing\`:     `trailing\`,
		`big\999.test.`: "big999.test",
	} {
		if got := wireName(in); got != want {
			t.Errorf("wireName(%q) = %q, want %q", in, got, want)
		}
	}
	c := NewCache(10)
	q := query(t, 5, "a\\023b.test.", dns.TypeA)
	if err := ask(t, c, q, reply(t, q, "a\\023b.test. 60 IN A 192.0.2.23")); err != nil {
		t.Fatal(err)
	}
	if name, _ := lookup(c, "192.0.2.23"); name != "a\x17b.test" {
		t.Errorf("name %q", name)
	}
}

// TestBound: 100,000 distinct names answered; the cache never holds more
// than its bound, and keeps the most recent.
func TestBound(t *testing.T) {
	const bound = 1000
	c := NewCache(bound)
	for i := range 100000 {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
		name := fmt.Sprintf("n%d.test.", i)
		q := query(t, uint16(i), name, dns.TypeA)
		if err := ask(t, c, q, reply(t, q, name+" 600 IN A "+ip)); err != nil {
			t.Fatal(err)
		}
		if c.Len() > bound {
			t.Fatalf("cache holds %d entries, bound %d", c.Len(), bound)
		}
	}
	if name, ok := lookup(c, "10.1.134.159"); !ok || name != "n99999.test" {
		t.Errorf("latest answer lost: %q %v", name, ok)
	}
	if _, ok := lookup(c, "10.0.0.0"); ok {
		t.Error("oldest answer kept beyond the bound")
	}
}

// TestQueriesBound: at most MaxQueries wait for an answer; the oldest
// goes first.
func TestQueriesBound(t *testing.T) {
	c := NewCache(10)
	first := query(t, 0, "first.test.", dns.TypeA)
	m := sock
	m.Query = true
	for i := range MaxQueries + 1 {
		m.Msg = query(t, uint16(i), fmt.Sprintf("q%d.test.", i), dns.TypeA)
		if i == 0 {
			m.Msg = first
		}
		if err := c.Observe(&m); err != nil {
			t.Fatal(err)
		}
		if len(c.byQuery) > MaxQueries || c.queries.Len() != len(c.byQuery) {
			t.Fatalf("%d queries waiting (list %d), bound %d", len(c.byQuery), c.queries.Len(), MaxQueries)
		}
	}
	m.Query, m.Msg = false, reply(t, first, "first.test. 60 IN A 192.0.2.1")
	if err := c.Observe(&m); !errors.Is(err, ErrUnsolicited) {
		t.Errorf("answer to a forgotten query: %v", err)
	}
}

func BenchmarkLookup(b *testing.B) {
	c := NewCache(10)
	q := query(b, 1, "b.test.", dns.TypeA)
	_ = ask(b, c, q, reply(b, q, "b.test. 600 IN A 192.0.2.1"))
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		c.Lookup(sock.Netns, sock.UID, a)
	}
}
