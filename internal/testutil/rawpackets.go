// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// SendICMPUnreachable sends, from inside n, the ICMP error a router sends
// back for a TCP SYN from src to dst with sequence number seq: host
// unreachable (IPv4 type 3 code 1) or address unreachable (ICMPv6 type 1
// code 3), quoting the SYN's IP header and TCP header. It goes to the
// address to over n's routes: to a local address of n, over its loopback.
// Tests use it to forge an error, with exactly the tuple and sequence
// number they choose, as anyone can in a namespace of their own.
func (n *NetNS) SendICMPUnreachable(to netip.Addr, src, dst netip.AddrPort, seq uint32) error {
	return n.Do(func() error { return sendICMPUnreachable(to, src, dst, seq) })
}

func sendICMPUnreachable(to netip.Addr, src, dst netip.AddrPort, seq uint32) error {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:2], src.Port())
	binary.BigEndian.PutUint16(tcp[2:4], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	tcp[12] = 5 << 4 // data offset: 5 words
	tcp[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(tcp[14:16], 64240)

	var msg icmp.Message
	var family, proto int
	if to.Is4() {
		inner := ipv4.Header{Version: ipv4.Version, Len: ipv4.HeaderLen, TotalLen: ipv4.HeaderLen + len(tcp),
			TTL: 64, Protocol: unix.IPPROTO_TCP, Src: src.Addr().AsSlice(), Dst: dst.Addr().AsSlice()}
		hdr, err := inner.Marshal()
		if err != nil {
			return err
		}
		msg = icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 1, Body: &icmp.DstUnreach{Data: append(hdr, tcp...)}}
		family, proto = unix.AF_INET, unix.IPPROTO_ICMP
	} else {
		// x/net has no IPv6 header marshaller: the fixed 40 bytes.
		hdr := make([]byte, ipv6.HeaderLen)
		hdr[0] = ipv6.Version << 4
		binary.BigEndian.PutUint16(hdr[4:6], uint16(len(tcp)))
		hdr[6] = unix.IPPROTO_TCP
		hdr[7] = 64
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		copy(hdr[8:24], s16[:])
		copy(hdr[24:40], d16[:])
		msg = icmp.Message{Type: ipv6.ICMPTypeDestinationUnreachable, Code: 3, Body: &icmp.DstUnreach{Data: append(hdr, tcp...)}}
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	// For ICMPv6 Marshal leaves the checksum to the kernel, which fills
	// it in on raw ICMPv6 sockets; for ICMP it computes it.
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("raw ICMP socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, b, 0, Sockaddr(netip.AddrPortFrom(to, 0))); err != nil {
		return fmt.Errorf("send ICMP error to %v: %w", to, err)
	}
	return nil
}

// SendSYN sends, from inside n, a bare TCP SYN from src to dst over a raw
// socket (the kernel adds the IP header, with n's source address for
// dst). Its checksum is left zero: tests use it to hit a rule that drops
// it before TCP would check it.
func (n *NetNS) SendSYN(src, dst netip.AddrPort) error {
	return n.Do(func() error {
		tcp := make([]byte, 20)
		binary.BigEndian.PutUint16(tcp[0:2], src.Port())
		binary.BigEndian.PutUint16(tcp[2:4], dst.Port())
		binary.BigEndian.PutUint32(tcp[4:8], 1)
		tcp[12] = 5 << 4
		tcp[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(tcp[14:16], 64240)
		family := unix.AF_INET
		if dst.Addr().Is6() {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return fmt.Errorf("raw TCP socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, tcp, 0, Sockaddr(netip.AddrPortFrom(dst.Addr(), 0))); err != nil {
			return fmt.Errorf("send SYN to %v: %w", dst, err)
		}
		return nil
	})
}
