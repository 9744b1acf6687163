// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// FuzzDecode: a ring-buffer record of any length and content decodes to
// an event with addresses of its family, or to an error; never a panic.
func FuzzDecode(f *testing.F) {
	e4 := &tcpconnectEvent{Kind: uint8(recordAttempt), Family: afInet}
	copy(e4.Saddr[:], []byte{127, 0, 0, 1})
	f.Add(bytes.Clone(eventBytes(e4)))
	e6 := &tcpconnectEvent{Kind: uint8(recordOutcome), Outcome: 2, Err: -1, Family: afInet6}
	rec := bytes.Clone(eventBytes(e6))
	f.Add(rec)
	f.Add(rec[:len(rec)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e event.Event
		if err := decode(raw, clock{}, &e); err != nil {
			return
		}
		switch e.Family {
		case event.FamilyIPv4:
			if !e.Saddr.Is4() || !e.Daddr.Is4() {
				t.Errorf("IPv4 event with addresses %v %v", e.Saddr, e.Daddr)
			}
		case event.FamilyIPv6:
			if !e.Saddr.Is6() || !e.Daddr.Is6() {
				t.Errorf("IPv6 event with addresses %v %v", e.Saddr, e.Daddr)
			}
		default:
			t.Errorf("decoded family %v", e.Family)
		}
		_ = e.Result.String()
	})
}

// FuzzDecodeDNS: a DNS record's message never reaches past the record,
// whatever its length field says.
func FuzzDecodeDNS(f *testing.F) {
	d := &tcpconnectDnsRecord{Kind: uint8(recordDNS), Family: afInet, Len: 12}
	raw := func() []byte { return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(d)), unsafe.Sizeof(*d))) }
	f.Add(raw())
	d.Family, d.Len = afInet6, 0xffffffff
	full := raw()
	f.Add(full)
	f.Add(full[:100])
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m event.DNSMessage
		if !decodeDNS(raw, &m) {
			return
		}
		if len(m.Msg) > len(tcpconnectDnsRecord{}.Msg) || !m.Server.IsValid() {
			t.Errorf("message of %d bytes, server %v", len(m.Msg), m.Server)
		}
		if m.Server.Addr().Is4In6() {
			t.Errorf("server %v not unmapped", m.Server)
		}
	})
}
