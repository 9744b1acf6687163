// SPDX-License-Identifier: Apache-2.0

// Package dns remembers which host name resolved to which address, from
// the DNS answers that the tracer sees arriving on the host, so that a
// connect to an address can be shown with the name the process dialled.
package dns

import (
	"container/list"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultSize bounds the cache when no size is given.
const DefaultSize = 10000

// Cache maps addresses to names. It holds at most its size in entries
// (least recently answered go first) and forgets an entry when the TTL of
// the answer that made it expires.
type Cache struct {
	mu     sync.Mutex
	max    int
	lru    *list.List // of *entry, most recently answered first
	byAddr map[netip.Addr]*list.Element
	now    func() time.Time
}

type entry struct {
	addr    netip.Addr
	name    string
	expires time.Time
}

// NewCache returns a cache of at most size entries.
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	return &Cache{max: size, lru: list.New(), byAddr: make(map[netip.Addr]*list.Element), now: time.Now}
}

// Len is the number of entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Lookup returns the name that addr was last answered for, if that
// answer has not expired.
func (c *Cache) Lookup(addr netip.Addr) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byAddr[addr.Unmap()]
	if !ok {
		return "", false
	}
	e := el.Value.(*entry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.byAddr, e.addr)
		return "", false
	}
	return e.name, true
}

// ObserveTCP takes a DNS message from a TCP segment: the two-byte length
// first. A message split over segments is skipped.
func (c *Cache) ObserveTCP(seg []byte) error {
	if len(seg) < 2 {
		return errors.New("short TCP DNS segment")
	}
	n := int(binary.BigEndian.Uint16(seg))
	if n != len(seg)-2 {
		return errors.New("TCP DNS message not whole in one segment")
	}
	return c.Observe(seg[2:])
}

// Observe takes one DNS message (as on the wire over UDP). Answers (A and
// AAAA, at the end of any CNAME chain) are remembered under the name
// that was asked for, with the smallest TTL along the chain.
func (c *Cache) Observe(msg []byte) error {
	var m dns.Msg
	if err := m.Unpack(msg); err != nil {
		return err
	}
	if !m.Response || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		return nil
	}
	// Each owner name's answers, to walk CNAME chains from the question.
	cnames := map[string]dns.RR{}
	addrs := map[string][]dns.RR{}
	for _, rr := range m.Answer {
		owner := strings.ToLower(rr.Header().Name)
		switch rr.(type) {
		case *dns.CNAME:
			cnames[owner] = rr
		case *dns.A, *dns.AAAA:
			addrs[owner] = append(addrs[owner], rr)
		}
	}
	asked := ""
	if len(m.Question) > 0 {
		asked = m.Question[0].Name
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if asked == "" {
		// No question: each owner names its own addresses.
		for owner, rrs := range addrs {
			for _, rr := range rrs {
				c.putLocked(rr, owner, rr.Header().Ttl, now)
			}
		}
		return nil
	}
	name, ttl := strings.ToLower(asked), uint32(1<<32-1)
	for hops := 0; hops < 16; hops++ {
		for _, rr := range addrs[name] {
			c.putLocked(rr, asked, min(ttl, rr.Header().Ttl), now)
		}
		cn, ok := cnames[name]
		if !ok {
			break
		}
		ttl = min(ttl, cn.Header().Ttl)
		name = strings.ToLower(cn.(*dns.CNAME).Target)
	}
	return nil
}

func (c *Cache) putLocked(rr dns.RR, name string, ttl uint32, now time.Time) {
	var addr netip.Addr
	switch rr := rr.(type) {
	case *dns.A:
		addr, _ = netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		addr, _ = netip.AddrFromSlice(rr.AAAA.To16())
	}
	if !addr.IsValid() || ttl == 0 {
		return
	}
	addr = addr.Unmap()
	e := &entry{addr: addr, name: strings.TrimSuffix(name, "."), expires: now.Add(time.Duration(ttl) * time.Second)}
	if el, ok := c.byAddr[addr]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.byAddr[addr] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byAddr, old.Value.(*entry).addr)
	}
}
