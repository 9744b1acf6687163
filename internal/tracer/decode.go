// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

const (
	afInet  = 2
	afInet6 = 10
)

// clock converts CLOCK_MONOTONIC ns (bpf_ktime_get_ns) to wall time.
type clock struct {
	wall time.Time
	mono uint64
}

func newClock() clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{wall: time.Now(), mono: uint64(ts.Nano())}
}

func (c clock) at(mono uint64) time.Time {
	return c.wall.Add(time.Duration(int64(mono - c.mono)))
}

func (c clock) now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// A record's first byte is its kind (enum record_kind); the rest follows
// from it.
type recordKind = tcpconnectRecordKind

const (
	recordAttempt = tcpconnectRecordKindRECORD_ATTEMPT
	recordOutcome = tcpconnectRecordKindRECORD_OUTCOME
	recordDNS     = tcpconnectRecordKindRECORD_DNS
	recordProcess = tcpconnectRecordKindRECORD_PROCESS
)

// asEvent views a ring-buffer record as the generated struct event, in
// place: the hot path neither copies, allocates nor reflects. Records are
// 8-byte aligned in the ring buffer and in the buffer ringbuf copies them
// to, as the struct needs.
func asEvent(raw []byte) (*tcpconnectEvent, error) {
	if len(raw) < int(unsafe.Sizeof(tcpconnectEvent{})) {
		return nil, fmt.Errorf("short record: %d bytes, want %d", len(raw), unsafe.Sizeof(tcpconnectEvent{}))
	}
	return (*tcpconnectEvent)(unsafe.Pointer(unsafe.SliceData(raw))), nil
}

// decode fills e from one event record (RECORD_ATTEMPT or
// RECORD_OUTCOME), with drop reasons as numbers.
func decode(raw []byte, c clock, e *event.Event) error {
	return decodeWith(raw, c, nil, e)
}

// decodeWith is decode with the kernel's drop reason names (nil: numbers).
func decodeWith(raw []byte, c clock, reasons *dropReasons, e *event.Event) error {
	r, err := asEvent(raw)
	if err != nil {
		return err
	}
	return decodeEvent(r, c, reasons, e)
}

// decodeEvent fills e from a struct event: a record, or an entry of the
// attempts map.
func decodeEvent(r *tcpconnectEvent, c clock, reasons *dropReasons, e *event.Event) error {
	switch recordKind(r.Kind) {
	case recordAttempt:
		e.Kind = event.KindAttempt
	case recordOutcome:
		e.Kind = event.KindOutcome
	default:
		return fmt.Errorf("event record of unknown kind %d", r.Kind)
	}
	e.Mono = r.StartNs
	e.Time = c.at(e.Mono)
	e.Latency = time.Duration(r.LatencyNs)
	e.PID = r.Pid
	e.TID = r.Tid
	e.UID = r.Uid
	e.PPID = r.Ppid
	e.PIDNsPID = r.PidNsPid
	e.CgroupID = r.CgroupId
	e.NetnsIno = r.NetnsIno
	e.NetnsCookie = r.NetnsCookie
	e.MntnsIno = r.MntnsIno
	e.Errno = unix.Errno(r.Err)
	e.Sport = r.Sport
	e.Dport = r.Dport
	switch r.Family {
	case afInet:
		e.Family = event.FamilyIPv4
		e.Saddr = netip.AddrFrom4([4]byte(r.Saddr[:4]))
		e.Daddr = netip.AddrFrom4([4]byte(r.Daddr[:4]))
	case afInet6:
		e.Family = event.FamilyIPv6
		e.Saddr = netip.AddrFrom16(r.Saddr)
		e.Daddr = netip.AddrFrom16(r.Daddr)
	default:
		return fmt.Errorf("record with unknown address family %d", r.Family)
	}
	e.Result = resultOf(tcpconnectOutcome(r.Outcome), e.Errno)
	// char[16] in C, int8 in Go: the same bytes.
	e.Comm = *(*[16]byte)(unsafe.Pointer(&r.Comm))
	decodeWhy(r, reasons, e)
	e.ExecID = r.ExecId
	e.Proc = nil
	return nil
}

// decodeWhy fills e.Why from the fields of struct event after comm.
func decodeWhy(r *tcpconnectEvent, reasons *dropReasons, e *event.Event) {
	flags := tcpconnectWhyFlags(r.Why)
	w := &e.Why
	*w = event.Why{}
	if r.SynSent > 1 {
		w.SynRetransmits = r.SynSent - 1
	}
	if flags&tcpconnectWhyFlagsWHY_NAT != 0 {
		if e.Family == event.FamilyIPv4 {
			w.NatDaddr = netip.AddrFrom4([4]byte(r.NatDaddr[:4]))
		} else {
			w.NatDaddr = netip.AddrFrom16(r.NatDaddr)
		}
		w.NatDport = r.NatDport
	}
	if flags&tcpconnectWhyFlagsWHY_DROPPED != 0 {
		w.DropReason = reasons.name(r.DropReason)
	}
	if flags&tcpconnectWhyFlagsWHY_ICMP != 0 {
		w.ICMP = true
		w.ICMPType = r.IcmpType
		w.ICMPCode = r.IcmpCode
		w.ICMPFrom = netip.AddrFrom16(r.IcmpFrom).Unmap()
	}
}

// resultOf maps the kernel's outcome and errno to a Result.
func resultOf(outcome tcpconnectOutcome, errno unix.Errno) event.Result {
	switch outcome {
	case tcpconnectOutcomeOUTCOME_ESTABLISHED:
		return event.ResultEstablished
	case tcpconnectOutcomeOUTCOME_CLOSED:
		return event.ResultAborted
	case tcpconnectOutcomeOUTCOME_FAILED, tcpconnectOutcomeOUTCOME_SYNC_FAILED:
		switch errno {
		case unix.ECONNREFUSED:
			return event.ResultRefused
		case unix.ETIMEDOUT:
			return event.ResultTimeout
		case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENETDOWN:
			return event.ResultUnreachable
		case unix.ECONNRESET:
			return event.ResultReset
		case unix.ECONNABORTED:
			return event.ResultAborted
		case unix.EPERM, unix.EACCES:
			return event.ResultDenied
		case unix.EADDRNOTAVAIL:
			return event.ResultNoPort
		}
		return event.ResultError
	}
	return event.ResultUnknown
}

// decodeDNS fills m from a DNS record (RECORD_DNS). A short record or one
// with an unknown family gives false.
func decodeDNS(raw []byte, m *event.DNSMessage) bool {
	if len(raw) < int(unsafe.Sizeof(tcpconnectDnsRecord{})) {
		return false
	}
	r := (*tcpconnectDnsRecord)(unsafe.Pointer(unsafe.SliceData(raw)))
	switch r.Family {
	case afInet:
		m.Server = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.Addr[:4])), r.Port)
	case afInet6:
		m.Server = netip.AddrPortFrom(netip.AddrFrom16(r.Addr).Unmap(), r.Port)
	default:
		return false
	}
	m.Socket = r.SockCookie
	m.Netns = r.NetnsCookie
	m.UID = r.Uid
	m.TCP = r.Tcp != 0
	m.Query = r.Query != 0
	n := min(int(r.Len), len(r.Msg))
	m.Msg = r.Msg[:n]
	return true
}
