// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SYNCapture records the source ports of TCP SYNs (SYN set, ACK clear) seen
// on any interface of one network namespace, IPv4 and IPv6. It gives tests
// ground truth for the port the kernel chose even when connect() fails: a
// refused connect releases its port, after which getsockname reports 0;
// and for the initial sequence number, which nothing else shows.
//
// A packet can be seen more than once (on lo as outgoing and again as
// incoming; a retransmitted SYN again), so sightings are deduplicated by
// destination and source port.
type SYNCapture struct {
	f    *os.File
	done chan struct{}

	mu      sync.Mutex
	seen    map[synKey]uint32 // the first sighting's sequence number
	order   []synKey
	changed chan struct{} // closed and replaced whenever order grows
	readErr error
}

type synKey struct {
	dst   netip.AddrPort
	sport uint16
}

// snapLen is how much of each packet is kept: enough for an IPv6 header and
// the longest TCP header, so nothing we parse is ever cut off.
const snapLen = 40 + 60

// StartSYNCapture starts recording SYNs in ns, or in the calling goroutine's
// (normally the host's) namespace when ns is nil. Packets sent after it
// returns are recorded; it stops at test cleanup.
func StartSYNCapture(t testing.TB, ns *NetNS) *SYNCapture {
	t.Helper()
	var fd int
	open := func() error {
		var err error
		fd, err = openSYNSocket()
		return err
	}
	var err error
	if ns == nil {
		err = open()
	} else {
		// The packet socket belongs to the namespace it is created in, and
		// keeps capturing there after Do returns.
		err = ns.Do(open)
	}
	if err != nil {
		t.Fatalf("StartSYNCapture: %v", err)
	}
	// A non-blocking fd makes os.File use the runtime poller, so Close
	// interrupts a pending Read and the reader goroutine can end.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		t.Fatalf("StartSYNCapture: %v", err)
	}
	c := &SYNCapture{
		f:       os.NewFile(uintptr(fd), "syncapture"),
		done:    make(chan struct{}),
		seen:    make(map[synKey]uint32),
		changed: make(chan struct{}),
	}
	go c.read()
	t.Cleanup(func() {
		_ = c.f.Close()
		<-c.done
	})
	return c
}

// openSYNSocket opens an AF_PACKET socket that receives, from every
// interface of the current thread's namespace and in both directions, only
// the TCP SYNs, cut to snapLen bytes. SOCK_DGRAM strips the link-layer
// header, which differs between lo and veth.
func openSYNSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	// Filtering in the kernel keeps the buffer from filling with unrelated
	// traffic on a busy host. Packets queued before the filter was attached
	// are harmless: read checks every packet itself too.
	prog := unix.SockFprog{Len: uint16(len(synFilter)), Filter: &synFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("attach SYN filter: %w", err)
	}
	// Room for bursts of SYNs while the reader goroutine is not scheduled;
	// best effort (it needs CAP_NET_ADMIN to exceed rmem_max).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// skfAdProtocol is SKF_AD_OFF + SKF_AD_PROTOCOL: a classic BPF load from it
// yields the packet's ethertype (host order), which SOCK_DGRAM otherwise only
// reports in the sockaddr.
const skfAdProtocol = 0xfffff000

// synFilter accepts IPv4 (first fragment only) and IPv6 (TCP as next header,
// i.e. no extension headers, which the kernel's SYNs never carry) TCP
// segments whose flags have SYN set and ACK clear. Offsets are relative to
// the network header.
var synFilter = []unix.SockFilter{
	/* 0 */ {Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdProtocol},
	/* 1 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.ETH_P_IP, Jt: 0, Jf: 8}, // else 10
	/* 2 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9}, // IPv4 protocol
	/* 3 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.IPPROTO_TCP, Jt: 0, Jf: 13},
	/* 4 */ {Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6}, // flags + fragment offset
	/* 5 */ {Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x1fff, Jt: 11, Jf: 0},
	/* 6 */ {Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0}, // X = IPv4 header length
	/* 7 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 13}, // TCP flags
	/* 8 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},
	/* 9 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 6, Jf: 7},
	/* 10 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.ETH_P_IPV6, Jt: 0, Jf: 6},
	/* 11 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6}, // IPv6 next header
	/* 12 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.IPPROTO_TCP, Jt: 0, Jf: 4},
	/* 13 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 40 + 13}, // TCP flags
	/* 14 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},
	/* 15 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 0, Jf: 1},
	/* 16 */ {Code: unix.BPF_RET | unix.BPF_K, K: snapLen},
	/* 17 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

func (c *SYNCapture) read() {
	defer close(c.done)
	buf := make([]byte, 256)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				c.mu.Lock()
				c.readErr = err
				c.mu.Unlock()
			}
			return
		}
		dst, sport, seq, ok := parseSYN(buf[:n])
		if !ok {
			continue
		}
		k := synKey{dst, sport}
		c.mu.Lock()
		if _, seen := c.seen[k]; !seen {
			c.seen[k] = seq
			c.order = append(c.order, k)
			close(c.changed)
			c.changed = make(chan struct{})
		}
		c.mu.Unlock()
	}
}

// parseSYN returns the destination, source port and sequence number of an
// IPv4 or IPv6 TCP segment with SYN set and ACK clear.
func parseSYN(p []byte) (dst netip.AddrPort, sport uint16, seq uint32, ok bool) {
	if len(p) < 1 {
		return dst, 0, 0, false
	}
	var daddr netip.Addr
	var tcp []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl || p[9] != unix.IPPROTO_TCP || binary.BigEndian.Uint16(p[6:8])&0x1fff != 0 {
			return dst, 0, 0, false
		}
		daddr = netip.AddrFrom4([4]byte(p[16:20]))
		tcp = p[ihl:]
	case 6:
		if len(p) < 40 || p[6] != unix.IPPROTO_TCP {
			return dst, 0, 0, false
		}
		daddr = netip.AddrFrom16([16]byte(p[24:40]))
		tcp = p[40:]
	default:
		return dst, 0, 0, false
	}
	if len(tcp) < 14 || tcp[13]&0x12 != 0x02 {
		return dst, 0, 0, false
	}
	return netip.AddrPortFrom(daddr, binary.BigEndian.Uint16(tcp[2:4])), binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint32(tcp[4:8]), true
}

// SourcePorts returns the distinct source ports of the SYNs seen so far to
// dst, in the order they were first seen, waiting up to timeout for at least
// one. It returns nil if none arrived. IPv4-mapped IPv6 addresses match
// their IPv4 form.
func (c *SYNCapture) SourcePorts(dst netip.AddrPort, timeout time.Duration) []uint16 {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		var ports []uint16
		for _, k := range c.order {
			if k.dst == dst {
				ports = append(ports, k.sport)
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if len(ports) > 0 {
			return ports
		}
		select {
		case <-changed:
		case <-c.done: // reader stopped: nothing more will arrive
			return nil
		case <-timer.C:
			return nil
		}
	}
}

// ISN returns the sequence number of the SYN from port sport to dst,
// waiting up to timeout for it; false if none arrived.
func (c *SYNCapture) ISN(dst netip.AddrPort, sport uint16, timeout time.Duration) (uint32, bool) {
	k := synKey{netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), sport}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		seq, ok := c.seen[k]
		changed := c.changed
		c.mu.Unlock()
		if ok {
			return seq, true
		}
		select {
		case <-changed:
		case <-c.done:
			return 0, false
		case <-timer.C:
			return 0, false
		}
	}
}

// Err reports why the capture stopped early (a read error other than the
// close at cleanup), or nil.
func (c *SYNCapture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}
