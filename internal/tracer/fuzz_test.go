// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// FuzzDecode: a ring-buffer record of any length and content decodes to
// an event with addresses of its family, or to an error; never a panic.
func FuzzDecode(f *testing.F) {
	rec := make([]byte, eventSize)
	binary.LittleEndian.PutUint16(rec[offFamily:], afInet)
	copy(rec[offSaddr:], []byte{127, 0, 0, 1})
	f.Add(bytes.Clone(rec))
	binary.LittleEndian.PutUint16(rec[offFamily:], afInet6)
	rec[offKind], rec[offOutcome] = 2, 2
	binary.LittleEndian.PutUint32(rec[offErr:], 0xffffffff)
	f.Add(bytes.Clone(rec))
	f.Add(rec[:eventSize-1])
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
	rec := make([]byte, dnsRecordSize)
	binary.LittleEndian.PutUint16(rec[offDNSFamily:], afInet)
	binary.LittleEndian.PutUint32(rec[offDNSLen:], 12)
	f.Add(bytes.Clone(rec))
	binary.LittleEndian.PutUint16(rec[offDNSFamily:], afInet6)
	binary.LittleEndian.PutUint32(rec[offDNSLen:], 0xffffffff)
	f.Add(bytes.Clone(rec))
	f.Add(rec[:100])
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m DNSMessage
		if !decodeDNS(raw, &m) {
			return
		}
		if len(m.Msg) > dnsRecordSize-offDNSMsg || !m.Server.IsValid() {
			t.Errorf("message of %d bytes, server %v", len(m.Msg), m.Server)
		}
		if m.Server.Addr().Is4In6() {
			t.Errorf("server %v not unmapped", m.Server)
		}
	})
}
