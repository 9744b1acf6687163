// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// nftTableName is the inet table each namespace gets for its test rules. It
// needs no cleanup of its own: it is destroyed with the namespace.
const nftTableName = "tcpconnect_test"

// DropSYN drops incoming TCP SYNs (SYN set, ACK clear) to port in the input
// hook, IPv4 and IPv6. A client elsewhere then sees its connect() stay
// pending (EINPROGRESS, no POLLOUT) while the kernel retransmits the SYN,
// and finally fail with ETIMEDOUT (after about 3 s with
// net.ipv4.tcp_syn_retries=1 in the client's namespace).
//
// The returned func deletes just this rule.
func (n *NetNS) DropSYN(port uint16) (remove func() error, err error) {
	return n.addRule(false, "drop-syn", append(matchTCPDport(port, true), &expr.Verdict{Kind: expr.VerdictDrop}))
}

// RejectICMP answers incoming TCP to port (every segment, the SYN included)
// with an ICMP host-unreachable (IPv4, type 3 code 1) or an ICMPv6
// address-unreachable (type 1 code 3): nft's "reject with icmpx type
// host-unreachable". A client's connect() then fails with EHOSTUNREACH for
// both families (Linux maps both codes to it and aborts a connection in
// SYN-SENT), but only after about one initial RTO (1 s), not at once.
//
// The delay is real kernel behaviour, not the rule's: between namespaces the
// whole path (veth, reject, ICMP back) runs synchronously in softirq inside
// the client's connect() call, while connect() still holds the socket lock.
// tcp_v4_err/tcp_v6_err then only record a soft error (TcpExt
// LockDroppedIcmps counts it). The ICMP answering the retransmitted SYN,
// sent from the timer, aborts the connect. With tcp_syn_retries=0 the
// timeout itself reports the soft error: EHOSTUNREACH after 1 s as well.
// A non-blocking connect() returns EINPROGRESS and the error appears in
// SO_ERROR at the same time.
//
// It also turns off the namespace's ICMP rate limits (net.ipv4.icmp_ratelimit,
// net.ipv6.icmp.ratelimit): replies to a remote peer are limited per peer to
// a burst of about 6 and then 1 per second, which would make a test's later
// rejected connects time out instead. Replies over lo are not limited.
//
// The returned func deletes just this rule.
func (n *NetNS) RejectICMP(port uint16) (remove func() error, err error) {
	for _, key := range []string{"net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"} {
		if err := n.Sysctl(key, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("RejectICMP: %w", err)
		}
	}
	return n.addRule(false, "reject-icmp", append(matchTCPDport(port, false), &expr.Reject{
		// The icmpx ("any family") variant lets one rule in an inet table
		// answer both families, each with its own code.
		Type: unix.NFT_REJECT_ICMPX_UNREACH,
		Code: unix.NFT_REJECT_ICMPX_HOST_UNREACH,
	}))
}

// DropOutputSYN drops outgoing TCP SYNs (SYN set, ACK clear) to port in the
// output hook, so a connect() made inside this namespace never puts a SYN on
// the wire. The local transmit error is not reported to connect(): it stays
// pending while the kernel retransmits, and fails with ETIMEDOUT like
// DropSYN.
//
// The returned func deletes just this rule.
func (n *NetNS) DropOutputSYN(port uint16) (remove func() error, err error) {
	return n.addRule(true, "drop-output-syn", append(matchTCPDport(port, true), &expr.Verdict{Kind: expr.VerdictDrop}))
}

// DNAT translates TCP connections made inside this namespace to from into
// connections to to, in the nat OUTPUT hook (what kube-proxy does for a
// Service's virtual address): "meta nfproto F ip[6] daddr A tcp dport P
// dnat to B:Q". from and to must be of one family. The kernel routes the
// SYN by from's address before the hook, so from needs a route (an
// address in a connected subnet will do).
//
// The returned func deletes just this rule; connections already
// translated keep their conntrack entry.
func (n *NetNS) DNAT(from, to netip.AddrPort) (remove func() error, err error) {
	fa, ta := from.Addr().Unmap(), to.Addr().Unmap()
	if fa.Is4() != ta.Is4() {
		return nil, fmt.Errorf("DNAT %v to %v: families differ", from, to)
	}
	proto, off := byte(unix.NFPROTO_IPV4), uint32(16) // iphdr.daddr
	if !fa.Is4() {
		proto, off = unix.NFPROTO_IPV6, 24 // ipv6hdr.daddr
	}
	port := binary.BigEndian.AppendUint16(nil, to.Port())
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(fa.AsSlice()))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: fa.AsSlice()},
	}
	e = append(e, matchTCPDport(from.Port(), false)...)
	e = append(e,
		&expr.Immediate{Register: 1, Data: ta.AsSlice()},
		&expr.Immediate{Register: 2, Data: port},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(proto), RegAddrMin: 1, RegProtoMin: 2},
	)
	return n.addRuleTo(chainNATOutput, "dnat", e)
}

// RejectForwardICMP makes this namespace a router that answers TCP to port
// that it forwards with an ICMP host-unreachable (IPv4 type 3 code 1,
// ICMPv6 type 1 code 3), sent from its own address: "reject with icmpx
// type host-unreachable" in the forward hook. It also turns on forwarding
// and, as RejectICMP, turns off the ICMP rate limits.
//
// The returned func deletes just this rule.
func (n *NetNS) RejectForwardICMP(port uint16) (remove func() error, err error) {
	for key, v := range map[string]string{
		"net.ipv4.icmp_ratelimit": "0", "net.ipv6.icmp.ratelimit": "0",
		"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
	} {
		if err := n.Sysctl(key, v); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("RejectForwardICMP: %w", err)
		}
	}
	return n.addRuleTo(chainForward, "reject-forward-icmp", append(matchTCPDport(port, false), &expr.Reject{
		Type: unix.NFT_REJECT_ICMPX_UNREACH,
		Code: unix.NFT_REJECT_ICMPX_HOST_UNREACH,
	}))
}

// matchTCPDport is "meta l4proto tcp tcp dport PORT", plus
// "tcp flags & (syn|ack) == syn" when synOnly is set.
func matchTCPDport(port uint16, synOnly bool) []expr.Any {
	dport := make([]byte, 2)
	binary.BigEndian.PutUint16(dport, port)
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
	}
	if synOnly {
		const syn, ack = 0x02, 0x10
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
		)
	}
	// A counter costs nothing and shows in `nft list ruleset` (where that
	// tool exists) whether the rule matched when a test misbehaves.
	return append(e, &expr.Counter{})
}

// nftSetup creates the table and its two base chains on first use. Callers
// hold n.mu.
func (n *NetNS) nftSetup() error {
	if n.nft != nil {
		return nil
	}
	// Transient conn: each operation opens a netlink socket inside the
	// namespace (mdlayher/socket does the setns on a locked thread and
	// restores it safely), so nothing needs closing and no stale messages
	// can linger between operations.
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns)))
	if err != nil {
		return err
	}
	table := c.AddTable(&nftables.Table{Name: nftTableName, Family: nftables.TableFamilyINet})
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	output := c.AddChain(&nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create nftables table %s: %w", nftTableName, err)
	}
	n.nft, n.nftTable, n.nftInput, n.nftOutput = c, table, input, output
	return nil
}

// addRule appends a rule to the input or output chain and returns a func
// that deletes it. google/nftables does not report the handle of a rule it
// adds, so the rule carries a unique comment and is looked up by it.
func (n *NetNS) addRule(output bool, what string, exprs []expr.Any) (func() error, error) {
	which := chainInput
	if output {
		which = chainOutput
	}
	return n.addRuleTo(which, what, exprs)
}

// The base chains of the test table.
type chainKind int

const (
	chainInput chainKind = iota
	chainOutput
	chainNATOutput // type nat hook output priority dstnat: DNAT
	chainForward   // type filter hook forward: a router's rules
)

// chain returns one of the base chains, creating the ones that only some
// tests need on first use. Callers hold n.mu, after nftSetup.
func (n *NetNS) chain(which chainKind) (*nftables.Chain, error) {
	accept := nftables.ChainPolicyAccept
	var slot **nftables.Chain
	var spec nftables.Chain
	switch which {
	case chainInput:
		return n.nftInput, nil
	case chainOutput:
		return n.nftOutput, nil
	case chainNATOutput:
		slot = &n.nftNATOutput
		spec = nftables.Chain{Name: "nat-output", Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest}
	case chainForward:
		slot = &n.nftForward
		spec = nftables.Chain{Name: "forward", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter}
	}
	if *slot != nil {
		return *slot, nil
	}
	spec.Table, spec.Policy = n.nftTable, &accept
	c := n.nft.AddChain(&spec)
	if err := n.nft.Flush(); err != nil {
		return nil, fmt.Errorf("create nftables chain %s: %w", spec.Name, err)
	}
	*slot = c
	return c, nil
}

// addRuleTo appends a rule to a base chain; see addRule.
func (n *NetNS) addRuleTo(which chainKind, what string, exprs []expr.Any) (func() error, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("%s: network namespace %s already removed", what, n.path)
	}
	if err := n.nftSetup(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	chain, err := n.chain(which)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	n.nftSeq++
	comment := fmt.Sprintf("testutil %s #%d", what, n.nftSeq)
	c, table := n.nft, n.nftTable
	c.AddRule(&nftables.Rule{
		Table:    table,
		Chain:    chain,
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
	})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("%s: add rule: %w", what, err)
	}
	rules, err := c.GetRules(table, chain)
	if err != nil {
		return nil, fmt.Errorf("%s: list rules: %w", what, err)
	}
	var handle uint64
	for _, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == comment {
			handle = r.Handle
		}
	}
	if handle == 0 {
		return nil, fmt.Errorf("%s: rule %q not found after adding it", what, comment)
	}

	var once sync.Once
	var removeErr error
	remove := func() error {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.closed {
				return // the namespace, and the rule with it, is gone
			}
			if err := c.DelRule(&nftables.Rule{Table: table, Chain: chain, Handle: handle}); err != nil {
				removeErr = fmt.Errorf("%s: remove rule: %w", what, err)
				return
			}
			if err := c.Flush(); err != nil {
				removeErr = fmt.Errorf("%s: remove rule: %w", what, err)
			}
		})
		return removeErr
	}
	return remove, nil
}
