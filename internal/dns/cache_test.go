// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func answer(t testing.TB, q string, rrs ...string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(q, dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(m)
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

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestCNAMEChainAndTTL(t *testing.T) {
	c := NewCache(10)
	clk := &clock{t: time.Unix(1000, 0)}
	c.now = clk.now
	msg := answer(t, "www.example.test.",
		"www.example.test. 300 IN CNAME edge.cdn.test.",
		"edge.cdn.test. 60 IN CNAME e1.cdn.test.",
		"e1.cdn.test. 120 IN A 192.0.2.7",
		"e1.cdn.test. 120 IN AAAA 2001:db8::7")
	if err := c.Observe(msg); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7"} {
		if name, ok := c.Lookup(netip.MustParseAddr(a)); !ok || name != "www.example.test" {
			t.Errorf("Lookup(%s) = %q %v", a, name, ok)
		}
	}
	// The chain's smallest TTL (60 s) bounds the entry.
	clk.t = clk.t.Add(61 * time.Second)
	if name, ok := c.Lookup(netip.MustParseAddr("192.0.2.7")); ok {
		t.Errorf("expired entry still answers %q", name)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d after one expiry", c.Len())
	}
}

func TestTCPFraming(t *testing.T) {
	c := NewCache(10)
	msg := answer(t, "tcp.test.", "tcp.test. 30 IN A 198.51.100.1")
	seg := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	seg = append(seg, msg...)
	if err := c.ObserveTCP(seg); err != nil {
		t.Fatal(err)
	}
	if name, _ := c.Lookup(netip.MustParseAddr("198.51.100.1")); name != "tcp.test" {
		t.Errorf("TCP answer not cached: %q", name)
	}
	if err := c.ObserveTCP(seg[:len(seg)-3]); err == nil {
		t.Error("partial TCP message accepted")
	}
}

func TestIgnoresQueriesAndGarbage(t *testing.T) {
	c := NewCache(10)
	q := new(dns.Msg)
	q.SetQuestion("q.test.", dns.TypeA)
	b, _ := q.Pack()
	if err := c.Observe(b); err != nil || c.Len() != 0 {
		t.Errorf("query: err %v len %d", err, c.Len())
	}
	if err := c.Observe([]byte("\x00\x01garbage that is not dns")); err == nil {
		t.Error("garbage accepted")
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
		if err := c.Observe(answer(t, name, name+" 600 IN A "+ip)); err != nil {
			t.Fatal(err)
		}
		if c.Len() > bound {
			t.Fatalf("cache holds %d entries, bound %d", c.Len(), bound)
		}
	}
	if name, ok := c.Lookup(netip.MustParseAddr("10.1.134.159")); !ok || name != "n99999.test" {
		t.Errorf("latest answer lost: %q %v", name, ok)
	}
	if _, ok := c.Lookup(netip.MustParseAddr("10.0.0.0")); ok {
		t.Error("oldest answer kept beyond the bound")
	}
}

func BenchmarkLookup(b *testing.B) {
	c := NewCache(10)
	_ = c.Observe(answer(b, "b.test.", "b.test. 600 IN A 192.0.2.1"))
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		c.Lookup(a)
	}
}
