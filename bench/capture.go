// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// synCapture records the source ports of the SYNs that reach given
// destination ports on lo. It is the ground truth for refused attempts: a
// refused connect() releases its port before it returns (tcp_disconnect
// clears inet_sport), so getsockname afterwards says 0, and binding the
// socket first (to a port, or to an address with IP_BIND_ADDRESS_NO_PORT)
// would change the connect path being measured, or not help.
//
// internal/testutil has a SYN capture too, but it is built for tests
// (testing.TB, deduplication by destination, both directions); this one
// keeps only received SYNs (each SYN on lo is seen twice, outgoing and
// incoming), counts every one, and reports the socket's drops.
type synCapture struct {
	fd     int
	dports map[uint16]bool
	stop   atomic.Bool
	done   chan struct{}

	// Written by the reader goroutine only; read after done.
	ports map[portKey]int
	err   error
}

const (
	skfAdOff      = 0xfffff000 // SKF_AD_OFF (-0x1000) as a classic BPF offset
	skfAdProtocol = skfAdOff + 0
	skfAdPkttype  = skfAdOff + 4
	captureSnap   = 40 + 60 // IPv6 header + longest TCP header
)

// captureFilter keeps IPv4 (first fragments) and IPv6 (TCP right after
// the fixed header, as the kernel's SYNs are) TCP segments with SYN set
// and ACK clear, received (PACKET_HOST) rather than sent, cut to
// captureSnap bytes. Offsets are from the network header (SOCK_DGRAM).
var captureFilter = []unix.SockFilter{
	/* 0 */ {Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdPkttype},
	/* 1 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.PACKET_HOST, Jt: 0, Jf: 17}, // else 19
	/* 2 */ {Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdProtocol},
	/* 3 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.ETH_P_IP, Jt: 0, Jf: 8}, // else 12
	/* 4 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},
	/* 5 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.IPPROTO_TCP, Jt: 0, Jf: 13},
	/* 6 */ {Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6},
	/* 7 */ {Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x1fff, Jt: 11, Jf: 0},
	/* 8 */ {Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},
	/* 9 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 13},
	/* 10 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},
	/* 11 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 6, Jf: 7},
	/* 12 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.ETH_P_IPV6, Jt: 0, Jf: 6},
	/* 13 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6},
	/* 14 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.IPPROTO_TCP, Jt: 0, Jf: 4},
	/* 15 */ {Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 40 + 13},
	/* 16 */ {Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},
	/* 17 */ {Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 0, Jf: 1},
	/* 18 */ {Code: unix.BPF_RET | unix.BPF_K, K: captureSnap},
	/* 19 */ {Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startSYNCapture opens the capture on lo; it records until stopAndWait.
func startSYNCapture(dports map[uint16]bool) (*synCapture, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, fmt.Errorf("finding lo: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("opening an AF_PACKET socket: %w", err)
	}
	c := &synCapture{fd: fd, dports: dports, done: make(chan struct{}), ports: make(map[portKey]int)}
	if err := c.setup(lo.Index); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *synCapture) setup(ifindex int) error {
	prog := unix.SockFprog{Len: uint16(len(captureFilter)), Filter: &captureFilter[0]}
	if err := unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attaching the SYN filter: %w", err)
	}
	if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("binding the capture to lo: %w", err)
	}
	// A whole run of SYNs fits, so a reader starved of CPU by the load
	// does not drop; drops are reported anyway.
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20); err != nil {
		return fmt.Errorf("growing the capture buffer: %w", err)
	}
	// The timeout lets the reader notice stop once the queue is empty.
	tv := unix.NsecToTimeval(int64(50e6))
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the capture timeout: %w", err)
	}
	// Packets queued between socket() and the filter are dropped here.
	_, _ = unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	return nil
}

func (c *synCapture) read() {
	defer close(c.done)
	// A blocking read on a thread of its own, so that the Go scheduler is
	// not involved per packet.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 256)
	for {
		n, err := unix.Read(c.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if c.stop.Load() {
					return
				}
				continue
			}
			c.err = fmt.Errorf("reading the capture: %w", err)
			return
		}
		sport, dport, ok := parseSYN(buf[:n])
		if ok && c.dports[dport] {
			c.ports[portKey{sport, dport}]++
		}
	}
}

// stopAndWait lets the reader drain what is queued, then closes the
// socket and returns the SYNs seen and the packets the socket dropped.
func (c *synCapture) stopAndWait() (map[portKey]int, uint32, error) {
	c.stop.Store(true)
	<-c.done
	var drops uint32
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err == nil {
		drops = st.Drops
	}
	_ = unix.Close(c.fd)
	return c.ports, drops, c.err
}

// parseSYN returns the ports of an IPv4 or IPv6 TCP segment with SYN set
// and ACK clear (the filter already checked; this guards the offsets).
func parseSYN(p []byte) (sport, dport uint16, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	var tcp []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl || p[9] != unix.IPPROTO_TCP {
			return 0, 0, false
		}
		tcp = p[ihl:]
	case 6:
		if len(p) < 40 || p[6] != unix.IPPROTO_TCP {
			return 0, 0, false
		}
		tcp = p[40:]
	default:
		return 0, 0, false
	}
	if len(tcp) < 14 || tcp[13]&0x12 != 0x02 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4]), true
}
