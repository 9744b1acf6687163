// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// fuzzSeeds are well-formed query/answer pairs and known-hostile shapes
// (a compression pointer loop, huge counts).
func fuzzSeeds(f *testing.F) [][]byte {
	q := query(f, 7, "www.example.test.", dns.TypeA)
	a := reply(f, q, "www.example.test. 60 IN CNAME e.cdn.test.", "e.cdn.test. 60 IN A 192.0.2.1")
	loop := append([]byte(nil), a[:12]...)
	binary.BigEndian.PutUint16(loop[4:], 1)   // one question
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1) // whose name points at itself
	huge := append([]byte(nil), a...)
	binary.BigEndian.PutUint16(huge[6:], 0xffff) // 65535 answers claimed
	return [][]byte{q, a, loop, huge, make([]byte, 12)}
}

// FuzzObserve: any bytes as a UDP query and then as its answer: nothing
// panics, and a message names nothing unless a query of the same socket
// came first.
func FuzzObserve(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, q, a []byte) { observeAnswerThenPair(t, false, q, a) })
}

// FuzzObserveTCP: the same over TCP framing (two-byte lengths that may
// lie).
func FuzzObserveTCP(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		seg := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
		seg = append(seg, s...)
		f.Add(seg, seg)
		f.Add(seg[:len(seg)/2], append(seg, seg...))
	}
	f.Fuzz(func(t *testing.T, q, a []byte) { observeAnswerThenPair(t, true, q, a) })
}

// observeAnswerThenPair feeds a alone (an answer to no query: it must
// name nothing), then q as a query and a as its answer, to a cache of 4.
func observeAnswerThenPair(t *testing.T, tcp bool, q, a []byte) {
	c := NewCache(4)
	m := sock
	m.TCP, m.Msg = tcp, a
	_ = c.Observe(&m)
	if c.Len() != 0 {
		t.Fatalf("an answer to no query made %d names", c.Len())
	}
	m.Query, m.Msg = true, q
	_ = c.Observe(&m)
	m.Query, m.Msg = false, a
	_ = c.Observe(&m)
	if c.Len() > 4 {
		t.Errorf("cache of 4 holds %d", c.Len())
	}
}
