// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// Offsets of struct event (bpf/tcpconnect.h); TestEventLayout checks them
// against the generated type, which bpf2go takes from the object's BTF.
const (
	offStartNs   = 0
	offLatencyNs = 8
	offCgroupID  = 16
	offSaddr     = 24
	offDaddr     = 40
	offPid       = 56
	offTid       = 60
	offUID       = 64
	offErr       = 68
	offPpid      = 72
	offPidNsPid  = 76
	offNetnsIno  = 80
	offMntnsIno  = 84
	offSport     = 88
	offDport     = 90
	offFamily    = 92
	offKind      = 94
	offOutcome   = 95
	offComm      = 96
	offExecID    = 112
	eventSize    = 120
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

// decode fills e from one ring-buffer record. It reads by offset so that
// the hot path neither allocates nor reflects.
func decode(raw []byte, c clock, e *event.Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("short record: %d bytes, want %d", len(raw), eventSize)
	}
	le := binary.LittleEndian
	e.Mono = le.Uint64(raw[offStartNs:])
	e.Time = c.at(e.Mono)
	e.Latency = time.Duration(le.Uint64(raw[offLatencyNs:]))
	e.PID = le.Uint32(raw[offPid:])
	e.TID = le.Uint32(raw[offTid:])
	e.UID = le.Uint32(raw[offUID:])
	e.PPID = le.Uint32(raw[offPpid:])
	e.PIDNsPID = le.Uint32(raw[offPidNsPid:])
	e.CgroupID = le.Uint64(raw[offCgroupID:])
	e.NetnsIno = le.Uint32(raw[offNetnsIno:])
	e.MntnsIno = le.Uint32(raw[offMntnsIno:])
	e.Errno = unix.Errno(int32(le.Uint32(raw[offErr:])))
	e.Sport = le.Uint16(raw[offSport:])
	e.Dport = le.Uint16(raw[offDport:])
	switch le.Uint16(raw[offFamily:]) {
	case afInet:
		e.Family = event.FamilyIPv4
		e.Saddr = netip.AddrFrom4([4]byte(raw[offSaddr : offSaddr+4]))
		e.Daddr = netip.AddrFrom4([4]byte(raw[offDaddr : offDaddr+4]))
	case afInet6:
		e.Family = event.FamilyIPv6
		e.Saddr = netip.AddrFrom16([16]byte(raw[offSaddr : offSaddr+16]))
		e.Daddr = netip.AddrFrom16([16]byte(raw[offDaddr : offDaddr+16]))
	default:
		return fmt.Errorf("record with unknown address family %d", le.Uint16(raw[offFamily:]))
	}
	e.Kind = event.Kind(raw[offKind])
	e.Result = event.ResultOf(raw[offOutcome], e.Errno)
	copy(e.Comm[:], raw[offComm:offComm+16])
	e.ExecID = le.Uint64(raw[offExecID:])
	e.Proc = nil
	return nil
}

// A DNS record (struct dns_record): its size tells it from an event.
const (
	dnsRecordSize = 8 + 1024
	offDNSLen     = 0
	offDNSTCP     = 4
	offDNSMsg     = 8
)

// dnsMessage returns the DNS message in a DNS record and whether it came
// over TCP.
func dnsMessage(raw []byte) ([]byte, bool) {
	n := binary.LittleEndian.Uint32(raw[offDNSLen:])
	if n > dnsRecordSize-offDNSMsg {
		n = dnsRecordSize - offDNSMsg
	}
	return raw[offDNSMsg : offDNSMsg+int(n)], raw[offDNSTCP] != 0
}
