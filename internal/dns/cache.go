// SPDX-License-Identifier: Apache-2.0

// Package dns remembers which host name resolved to which address, from
// the DNS queries and answers that the tracer sees on the sockets of the
// host, so that a connect to an address can be shown with the name the
// process dialled.
//
// Everything here comes from the traced system and is hostile until
// proven otherwise. An answer is believed only when it answers a query
// that the same socket sent to the same server (address and port), with
// the same ID and question, not long ago; anything else is dropped. A
// name it gives names only connects from the network namespace and the
// user of the socket that asked: a user who resolves a name of their own
// to someone else's address changes nothing that other users see.
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
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// DefaultSize bounds the cache when no size is given.
const DefaultSize = 10000

// QueryLifetime is how long a query waits for its answer: longer than a
// stub resolver's timeouts and retries (glibc: 5 s, two tries per server).
const QueryLifetime = 15 * time.Second

// MaxQueries bounds the queries waiting for an answer; beyond it the
// oldest is forgotten (its answer then names nothing).
const MaxQueries = 4096

// ErrUnsolicited is returned for an answer that matches no waiting.
var ErrUnsolicited = errors.New("DNS answer to no query of this socket")

// Cache maps (network namespace, user, address) to names. It holds at
// most its size in entries (least recently answered go first) and
// forgets an entry when the TTL of the answer that made it expires.
type Cache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *entry, most recently answered first
	names map[nameKey]*list.Element
	// Queries waiting for their answer, oldest first: all live for
	// QueryLifetime, so the oldest also expires first.
	queries  *list.List // of *waiting
	byQuery  map[queryKey]*list.Element
	now      func() time.Time
	seen     uint64
	dropped  uint64
	answered uint64
}

type nameKey struct {
	netns uint64
	uid   uint32
	addr  netip.Addr
}

type entry struct {
	key     nameKey
	name    string
	expires time.Time
}

// queryKey is what an answer must repeat to be believed.
type queryKey struct {
	socket        uint64
	server        netip.AddrPort
	id            uint16
	name          string // lower case
	qtype, qclass uint16
}

// waiting is a query that waits for its answer.
type waiting struct {
	key     queryKey
	netns   uint64
	uid     uint32
	expires time.Time
}

// NewCache returns a cache of at most size names.
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	return &Cache{
		max: size, lru: list.New(), names: make(map[nameKey]*list.Element),
		queries: list.New(), byQuery: make(map[queryKey]*list.Element), now: time.Now,
	}
}

// Len is the number of names held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Counts returns how many messages were observed, how many answers were
// believed and how many were dropped as answering no query.
func (c *Cache) Counts() (seen, answered, dropped uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen, c.answered, c.dropped
}

// Lookup returns the name that addr was last answered for to a socket of
// user uid in network namespace netns, if that answer has not expired.
func (c *Cache) Lookup(netns uint64, uid uint32, addr netip.Addr) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := nameKey{netns: netns, uid: uid, addr: addr.Unmap()}
	el, ok := c.names[k]
	if !ok {
		return "", false
	}
	e := el.Value.(*entry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.names, k)
		return "", false
	}
	return e.name, true
}

// Observe takes one message seen on a socket. Over TCP, each whole
// message of the segment counts; a message split over segments is
// skipped. It returns the first error met (malformed, unsolicited); the
// messages around it still count.
func (c *Cache) Observe(m *event.DNSMessage) error {
	c.mu.Lock()
	c.seen++
	c.mu.Unlock()
	if !m.TCP {
		return c.observe(m, m.Msg)
	}
	seg := m.Msg
	if len(seg) < 2 {
		return errors.New("short TCP DNS segment")
	}
	var first error
	for len(seg) >= 2 {
		n := int(binary.BigEndian.Uint16(seg))
		if n > len(seg)-2 {
			if first == nil {
				first = errors.New("TCP DNS message not whole in one segment")
			}
			break
		}
		if err := c.observe(m, seg[2:2+n]); err != nil && first == nil {
			first = err
		}
		seg = seg[2+n:]
	}
	return first
}

func (c *Cache) observe(m *event.DNSMessage, msg []byte) error {
	var d dns.Msg
	if err := d.Unpack(msg); err != nil {
		return err
	}
	// One question is what every stub resolver sends; messages with
	// more or none cannot be matched safely.
	if d.Opcode != dns.OpcodeQuery || len(d.Question) != 1 {
		return errors.New("DNS message without exactly one question")
	}
	q := d.Question[0]
	key := queryKey{
		socket: m.Socket, server: unmap(m.Server), id: d.Id,
		name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass,
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireQueriesLocked(now)
	if m.Query {
		if d.Response {
			return errors.New("DNS response sent to port 53")
		}
		c.addQueryLocked(&waiting{key: key, netns: m.Netns, uid: m.UID, expires: now.Add(QueryLifetime)})
		return nil
	}
	if !d.Response {
		return errors.New("DNS query received from port 53")
	}
	el, ok := c.byQuery[key]
	if !ok {
		c.dropped++
		return ErrUnsolicited
	}
	qu := el.Value.(*waiting)
	// One answer per query: a second one (a spoofer racing the server)
	// names nothing.
	c.queries.Remove(el)
	delete(c.byQuery, key)
	// The answer came to the socket that asked; its owner is the query's.
	if qu.netns != m.Netns || qu.uid != m.UID {
		c.dropped++
		return ErrUnsolicited
	}
	c.answered++
	if d.Rcode != dns.RcodeSuccess {
		return nil
	}
	c.answerLocked(&d, nameKey{netns: qu.netns, uid: qu.uid}, q.Name, now)
	return nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *Cache) expireQueriesLocked(now time.Time) {
	for el := c.queries.Front(); el != nil; el = c.queries.Front() {
		q := el.Value.(*waiting)
		if now.Before(q.expires) {
			return
		}
		c.queries.Remove(el)
		delete(c.byQuery, q.key)
	}
}

func (c *Cache) addQueryLocked(q *waiting) {
	// A repeated query (a resolver's retry) waits again, from now.
	if el, ok := c.byQuery[q.key]; ok {
		c.queries.Remove(el)
	}
	c.byQuery[q.key] = c.queries.PushBack(q)
	for c.queries.Len() > MaxQueries {
		old := c.queries.Front()
		c.queries.Remove(old)
		delete(c.byQuery, old.Value.(*waiting).key)
	}
}

// answerLocked remembers the answers (A and AAAA, at the end of any
// CNAME chain from the question) under the name asked for, with the
// smallest TTL along the chain.
func (c *Cache) answerLocked(m *dns.Msg, owner nameKey, asked string, now time.Time) {
	cnames := map[string]dns.RR{}
	addrs := map[string][]dns.RR{}
	for _, rr := range m.Answer {
		name := strings.ToLower(rr.Header().Name)
		switch rr.(type) {
		case *dns.CNAME:
			cnames[name] = rr
		case *dns.A, *dns.AAAA:
			addrs[name] = append(addrs[name], rr)
		}
	}
	name, ttl := strings.ToLower(asked), uint32(1<<32-1)
	for hops := 0; hops < 16; hops++ {
		for _, rr := range addrs[name] {
			c.putLocked(rr, owner, asked, min(ttl, rr.Header().Ttl), now)
		}
		cn, ok := cnames[name]
		if !ok {
			break
		}
		ttl = min(ttl, cn.Header().Ttl)
		name = strings.ToLower(cn.(*dns.CNAME).Target)
	}
}

func (c *Cache) putLocked(rr dns.RR, k nameKey, name string, ttl uint32, now time.Time) {
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
	k.addr = addr.Unmap()
	e := &entry{key: k, name: wireName(name), expires: now.Add(time.Duration(ttl) * time.Second)}
	if el, ok := c.names[k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.names[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.names, old.Value.(*entry).key)
	}
}

// wireName turns a name in presentation format (miekg/dns escapes a
// label's special bytes as \DDD or \X) back into the bytes that were on
// the wire, without the final dot: the output escapes them once, in its
// own style. A dot inside a label shows as a dot.
func wireName(s string) string {
	s = strings.TrimSuffix(s, ".")
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
