// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vethSeq makes veth names unique within the test binary. The links only
// ever exist inside namespaces the tests created, so names cannot clash with
// the host's or with another test binary's.
var vethSeq atomic.Uint64

// linkReadyTimeout bounds the wait for carrier and usable IPv6 addresses.
// Both normally take well under a millisecond; the margin is for slow,
// emulated CPUs in QEMU.
const linkReadyTimeout = 10 * time.Second

// Veth joins two namespaces with a veth pair, sets both ends up, assigns the
// given addresses (each slice may mix IPv4 and IPv6) and waits until they
// are usable (see AddAddrs). It returns the interface names in a and in b.
// Cleanup deletes the pair; removing either namespace would too.
func Veth(t testing.TB, a, b *NetNS, addrsA, addrsB []netip.Prefix) (ifA, ifB string) {
	t.Helper()
	if a == nil || b == nil {
		t.Fatal("Veth: both namespaces must be non-nil")
	}
	seq := vethSeq.Add(1)
	ifA = fmt.Sprintf("tcv%da", seq) // at most 15 bytes (IFNAMSIZ-1) up to seq < 1e11
	ifB = fmt.Sprintf("tcv%db", seq)

	bh, err := b.handle()
	if err != nil {
		t.Fatalf("Veth: %v", err)
	}
	err = a.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: ifA},
			PeerName:  ifB,
			// The peer is created in a and moved to b in the same request.
			PeerNamespace: netlink.NsFd(int(bh)),
		})
	})
	if err != nil {
		t.Fatalf("Veth: create %s/%s: %v", ifA, ifB, err)
	}
	t.Cleanup(func() {
		// Gone already if a test deleted it itself; deleting one end
		// removes both.
		err := a.Do(func() error {
			l, err := netlink.LinkByName(ifA)
			if err != nil {
				var nf netlink.LinkNotFoundError
				if errors.As(err, &nf) {
					return nil
				}
				return err
			}
			return netlink.LinkDel(l)
		})
		if err != nil {
			t.Errorf("Veth cleanup: delete %s: %v", ifA, err)
		}
	})

	// Configure both ends before waiting on either: a veth end only gets
	// carrier once its peer is up too.
	if err := a.Do(func() error { return addAddrs(ifA, addrsA) }); err != nil {
		t.Fatalf("Veth: configure %s: %v", ifA, err)
	}
	if err := b.Do(func() error { return addAddrs(ifB, addrsB) }); err != nil {
		t.Fatalf("Veth: configure %s: %v", ifB, err)
	}
	deadline := time.Now().Add(linkReadyTimeout)
	if err := a.Do(func() error { return waitUsable(ifA, addrsA, deadline) }); err != nil {
		t.Fatalf("Veth: %s: %v", ifA, err)
	}
	if err := b.Do(func() error { return waitUsable(ifB, addrsB, deadline) }); err != nil {
		t.Fatalf("Veth: %s: %v", ifB, err)
	}
	return ifA, ifB
}

// AddAddrs adds addresses (IPv4 and/or IPv6) to dev inside the namespace,
// sets dev up, and waits until the addresses are usable, as Veth does.
// It is for addresses beyond those given to Veth, e.g. extra destinations
// behind a route, and works on lo as well.
func (n *NetNS) AddAddrs(dev string, addrs ...netip.Prefix) error {
	return n.Do(func() error {
		if err := addAddrs(dev, addrs); err != nil {
			return fmt.Errorf("AddAddrs %s: %w", dev, err)
		}
		if err := waitUsable(dev, addrs, time.Now().Add(linkReadyTimeout)); err != nil {
			return fmt.Errorf("AddAddrs %s: %w", dev, err)
		}
		return nil
	})
}

// addAddrs runs inside the link's namespace.
//
// IPv6 addresses get IFA_F_NODAD (and NewNetNS disabled DAD for the
// namespace), because a tentative address cannot be bound to and would make
// early connects fail with EADDRNOTAVAIL.
func addAddrs(name string, addrs []netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	for _, p := range addrs {
		if !p.IsValid() {
			return fmt.Errorf("invalid prefix %v", p)
		}
		a := &netlink.Addr{IPNet: prefixIPNet(p, false)}
		if !p.Addr().Unmap().Is4() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %v: %w", p, err)
		}
	}
	return netlink.LinkSetUp(l)
}

// waitUsable runs inside the link's namespace and waits until the link has
// carrier, no IPv6 address on it is tentative, and each of addrs has its
// local route.
//
// The last check matters even without DAD: the kernel finishes adding an
// IPv6 address (local route, joining its solicited-node multicast group)
// in a deferred work item. Until that ran, the address answers neither
// neighbour solicitations nor SYNs, and the first connect to it stalls for
// a one-second retransmission (seen about once in 25 runs). The carrier
// check matters because a veth end gets carrier only once both ends are up;
// before, its routes are linkdown.
func waitUsable(name string, addrs []netip.Prefix, deadline time.Time) error {
	for {
		state, err := linkState(name, addrs)
		if err != nil {
			return err
		}
		if state == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not usable after %v: %s", linkReadyTimeout, state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// linkState says what is not ready yet, or "".
func linkState(name string, addrs []netip.Prefix) (string, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return "", err
	}
	const up = unix.IFF_UP | unix.IFF_RUNNING | unix.IFF_LOWER_UP
	if f := l.Attrs().RawFlags; f&up != up {
		return fmt.Sprintf("link flags %#x, operstate %v", f, l.Attrs().OperState), nil
	}
	v6, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		// The addresses changed during the dump (DAD, the link coming
		// up): the answer may be incomplete, so ask again.
		return "address list changed while read", nil
	}
	if err != nil {
		return "", err
	}
	for _, a := range v6 {
		if a.Flags&unix.IFA_F_DADFAILED != 0 {
			return "", fmt.Errorf("IPv6 address %v failed duplicate address detection", a.IPNet)
		}
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			return fmt.Sprintf("IPv6 address %v tentative", a.IPNet), nil
		}
	}
	for _, p := range addrs {
		ip := net.IP(p.Addr().Unmap().AsSlice())
		routes, err := netlink.RouteGet(ip)
		if err != nil {
			return fmt.Sprintf("no route to own address %v yet (%v)", p.Addr(), err), nil
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Type == unix.RTN_LOCAL }) {
			return fmt.Sprintf("no local route for own address %v yet", p.Addr()), nil
		}
	}
	return "", nil
}

// prefixIPNet converts p for netlink. masked clears host bits, as route
// destinations require; addresses keep them.
func prefixIPNet(p netip.Prefix, masked bool) *net.IPNet {
	if masked {
		p = p.Masked()
	}
	addr := p.Addr().Unmap()
	bits := 128
	if addr.Is4() {
		bits = 32
	}
	ones := p.Bits()
	if ones > bits { // an IPv4-mapped prefix such as ::ffff:10.0.0.0/104
		ones -= 128 - bits
	}
	return &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(ones, bits)}
}

// routeTypes maps AddRoute's typ to rtm_type. The connect() errors the kernel
// gives for them (measured on 6.18, see TestRoutes): prohibit EACCES,
// unreachable EHOSTUNREACH, blackhole EINVAL, all at once.
var routeTypes = map[string]int{
	"unreachable": unix.RTN_UNREACHABLE,
	"prohibit":    unix.RTN_PROHIBIT,
	"blackhole":   unix.RTN_BLACKHOLE,
}

// AddRoute adds a route for dst (IPv4 or IPv6) inside the namespace. typ is
// "unreachable", "prohibit", "blackhole", or "unicast".
//
// The signature has no gateway or device, so "unicast" adds an on-link route
// (scope link, no gateway) through the namespace's only non-loopback link,
// and fails if there is not exactly one; use AddRouteVia for a gateway or a
// chosen device.
func (n *NetNS) AddRoute(dst netip.Prefix, typ string) error {
	if !dst.IsValid() {
		return fmt.Errorf("AddRoute: invalid destination %v", dst)
	}
	if typ == "unicast" {
		return n.Do(func() error {
			links, err := netlink.LinkList()
			// A dump interrupted by a concurrent change may be incomplete:
			// read again.
			for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 10; try++ {
				links, err = netlink.LinkList()
			}
			if err != nil {
				return err
			}
			var only netlink.Link
			count := 0
			for _, l := range links {
				if l.Attrs().Flags&net.FlagLoopback == 0 {
					only = l
					count++
				}
			}
			if count != 1 {
				return fmt.Errorf("AddRoute %v unicast: namespace has %d non-loopback links, need exactly 1 (use AddRouteVia)", dst, count)
			}
			r := &netlink.Route{
				LinkIndex: only.Attrs().Index,
				Dst:       prefixIPNet(dst, true),
				Scope:     netlink.SCOPE_LINK,
				Type:      unix.RTN_UNICAST,
			}
			if err := netlink.RouteAdd(r); err != nil {
				return fmt.Errorf("AddRoute %v unicast dev %s: %w", dst, only.Attrs().Name, err)
			}
			return nil
		})
	}
	rt, ok := routeTypes[typ]
	if !ok {
		return fmt.Errorf("AddRoute: unknown route type %q (want unicast, unreachable, prohibit or blackhole)", typ)
	}
	return n.Do(func() error {
		// No device: the kernel attaches reject routes to lo itself.
		r := &netlink.Route{Dst: prefixIPNet(dst, true), Type: rt}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("AddRoute %v %s: %w", dst, typ, err)
		}
		return nil
	})
}

// AddRouteVia adds a unicast route for dst through gateway gw on device dev
// inside the namespace. An invalid (zero) gw adds an on-link route on dev.
// It exists because AddRoute's fixed signature cannot name a gateway.
func (n *NetNS) AddRouteVia(dst netip.Prefix, gw netip.Addr, dev string) error {
	if !dst.IsValid() {
		return fmt.Errorf("AddRouteVia: invalid destination %v", dst)
	}
	return n.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("AddRouteVia: %w", err)
		}
		r := &netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       prefixIPNet(dst, true),
			Type:      unix.RTN_UNICAST,
		}
		if gw.IsValid() {
			r.Gw = net.IP(gw.Unmap().AsSlice())
		} else {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("AddRouteVia %v via %v dev %s: %w", dst, gw, dev, err)
		}
		return nil
	})
}
