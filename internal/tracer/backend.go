// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/tcpconnect/tcpconnect/internal/cgroups"
)

// Backend names how the kernel is hooked (see doc.go).
type Backend string

const (
	BackendAuto    Backend = "auto"
	BackendFentry  Backend = "fentry"
	BackendKprobe  Backend = "kprobe"
	BackendSockops Backend = "sockops"
)

// Backends lists the backends in the order auto tries them: the most
// direct hook first.
var Backends = []Backend{BackendFentry, BackendKprobe, BackendSockops}

// ParseBackend checks a --backend value.
func ParseBackend(s string) (Backend, error) {
	b := Backend(s)
	if b == BackendAuto {
		return b, nil
	}
	for _, known := range Backends {
		if b == known {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown backend %q (want auto, fentry, kprobe or sockops)", s)
}

// Objects of each backend: LoadAndAssign loads only the programs named in
// the struct, so a backend never loads (and the verifier never sees) the
// programs of another. Every backend loads every map: the generated
// tcpconnectMaps names them all.
type sharedObjects struct {
	State *ebpf.Program `ebpf:"tcpconnect_state"`
	tcpconnectMaps
	// The globals, shared with the programs attachWhy loads afterwards,
	// which read pending_attempts.
	BSS     *ebpf.Map      `ebpf:".bss"`
	Pending *ebpf.Variable `ebpf:"pending_attempts"`
}

type fentryObjects struct {
	sharedObjects
	StreamConnect     *ebpf.Program `ebpf:"tcpconnect_fentry_stream_connect"`
	StreamConnectExit *ebpf.Program `ebpf:"tcpconnect_fexit_stream_connect"`
	TCPConnect        *ebpf.Program `ebpf:"tcpconnect_fentry_tcp_connect"`
}

type kprobeObjects struct {
	sharedObjects
	StreamConnect    *ebpf.Program `ebpf:"tcpconnect_kprobe_stream_connect"`
	StreamConnectRet *ebpf.Program `ebpf:"tcpconnect_kretprobe_stream_connect"`
	TCPConnect       *ebpf.Program `ebpf:"tcpconnect_kprobe_tcp_connect"`
}

type sockopsObjects struct {
	sharedObjects
	Connect4 *ebpf.Program `ebpf:"tcpconnect_connect4"`
	Connect6 *ebpf.Program `ebpf:"tcpconnect_connect6"`
	Sockops  *ebpf.Program `ebpf:"tcpconnect_sockops"`
}

// sockopsSyncObjects is the sockops backend with --sync-errors: the
// syscall tracepoints that give connect()'s errno, at the price of every
// syscall of the host (see Config.SyncErrors).
type sockopsSyncObjects struct {
	sockopsObjects
	ConnectEnter *ebpf.Program `ebpf:"tcpconnect_connect_enter"`
	ConnectExit  *ebpf.Program `ebpf:"tcpconnect_connect_exit"`
}

// loaded is one backend's programs and maps in the kernel, and its links.
type loaded struct {
	shared  *sharedObjects
	closers []interface{ Close() error }
	links   []link.Link
}

func (l *loaded) Close() error {
	var errs []error
	// Links first: detach before the programs go.
	for i := len(l.links) - 1; i >= 0; i-- {
		errs = append(errs, l.links[i].Close())
	}
	for _, c := range l.closers {
		errs = append(errs, c.Close())
	}
	l.links, l.closers = nil, nil
	return errors.Join(errs...)
}

func (l *loaded) attach(what string, lk link.Link, err error) error {
	if err != nil {
		return fmt.Errorf("attaching %s: %w", what, err)
	}
	l.links = append(l.links, lk)
	return nil
}

// cgroupProg is a program to attach to a cgroup, and how.
type cgroupProg struct {
	name string // for errors: the section name
	prog *ebpf.Program
	typ  ebpf.AttachType
}

// attachCgroup attaches progs, in order, to the cgroup at path.
func (l *loaded) attachCgroup(path string, progs ...cgroupProg) error {
	for _, p := range progs {
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: p.typ, Program: p.prog})
		if err := l.attach(p.name+" on "+path, lk, err); err != nil {
			return err
		}
	}
	return nil
}

// attachShared attaches the hooks every backend uses.
func (l *loaded) attachShared(o *sharedObjects) error {
	lk, err := link.Tracepoint("sock", "inet_sock_set_state", o.State, nil)
	return l.attach("tracepoint sock/inet_sock_set_state", lk, err)
}

// load loads and attaches backend b from spec. On error, nothing of it
// stays in the kernel. syncErrors adds the syscall tracepoints where the
// backend cannot see connect()'s return otherwise (sockops).
func load(spec *ebpf.CollectionSpec, b Backend, cgroupPath string, syncErrors bool, opts *ebpf.CollectionOptions) (*loaded, error) {
	l := &loaded{}
	if err := l.load(spec, b, cgroupPath, syncErrors, opts); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *loaded) load(spec *ebpf.CollectionSpec, b Backend, cgroupPath string, syncErrors bool, opts *ebpf.CollectionOptions) error {
	// fentry and kprobe see inet_stream_connect return; sockops only
	// through the syscall tracepoint.
	exitHooked := b != BackendSockops || syncErrors
	if err := spec.Variables["exit_hooked"].Set(exitHooked); err != nil {
		return fmt.Errorf("setting exit_hooked: %w", err)
	}
	switch b {
	case BackendFentry:
		var o fentryObjects
		if err := spec.LoadAndAssign(&o, opts); err != nil {
			return fmt.Errorf("loading: %w", err)
		}
		l.shared = &o.sharedObjects
		l.closers = append(l.closers, o.StreamConnect, o.StreamConnectExit, o.TCPConnect)
		l.closeShared()
		for _, a := range []struct {
			name string
			prog *ebpf.Program
		}{
			{"fentry/inet_stream_connect", o.StreamConnect},
			{"fexit/inet_stream_connect", o.StreamConnectExit},
			{"fentry/tcp_connect", o.TCPConnect},
		} {
			lk, err := link.AttachTracing(link.TracingOptions{Program: a.prog})
			if err := l.attach(a.name, lk, err); err != nil {
				return err
			}
		}
	case BackendKprobe:
		var o kprobeObjects
		if err := spec.LoadAndAssign(&o, opts); err != nil {
			return fmt.Errorf("loading: %w", err)
		}
		l.shared = &o.sharedObjects
		l.closers = append(l.closers, o.StreamConnect, o.StreamConnectRet, o.TCPConnect)
		l.closeShared()
		lk, err := link.Kprobe("inet_stream_connect", o.StreamConnect, nil)
		if err := l.attach("kprobe/inet_stream_connect", lk, err); err != nil {
			return err
		}
		// The kernel follows max(10, 2 × possible CPUs) calls at once; a
		// blocking connect holds one until its handshake ends, and a call
		// past that limit loses only its return value (a failure before
		// the SYN). A larger RetprobeMaxActive would need a tracefs
		// kprobe_events entry, which outlives a killed tool and must be
		// removed through a tracefs of the private mount namespace.
		lk, err = link.Kretprobe("inet_stream_connect", o.StreamConnectRet, nil)
		if err := l.attach("kretprobe/inet_stream_connect", lk, err); err != nil {
			return err
		}
		lk, err = link.Kprobe("tcp_connect", o.TCPConnect, nil)
		if err := l.attach("kprobe/tcp_connect", lk, err); err != nil {
			return err
		}
	case BackendSockops:
		if cgroupPath == "" {
			return errors.New("no cgroup v2 hierarchy to attach to (sockops needs one)")
		}
		var (
			so sockopsSyncObjects
			o  = &so.sockopsObjects
		)
		if syncErrors {
			if err := spec.LoadAndAssign(&so, opts); err != nil {
				return fmt.Errorf("loading: %w", err)
			}
			l.closers = append(l.closers, so.ConnectEnter, so.ConnectExit)
		} else if err := spec.LoadAndAssign(o, opts); err != nil {
			return fmt.Errorf("loading: %w", err)
		}
		l.shared = &o.sharedObjects
		l.closers = append(l.closers, o.Connect4, o.Connect6, o.Sockops)
		l.closeShared()
		if syncErrors {
			lk, err := link.Tracepoint("syscalls", "sys_enter_connect", so.ConnectEnter, nil)
			if err := l.attach("tracepoint syscalls/sys_enter_connect", lk, err); err != nil {
				return err
			}
			lk, err = link.Tracepoint("syscalls", "sys_exit_connect", so.ConnectExit, nil)
			if err := l.attach("tracepoint syscalls/sys_exit_connect", lk, err); err != nil {
				return err
			}
		}
		if err := l.attachCgroup(cgroupPath,
			cgroupProg{"cgroup/connect4", o.Connect4, ebpf.AttachCGroupInet4Connect},
			cgroupProg{"cgroup/connect6", o.Connect6, ebpf.AttachCGroupInet6Connect},
			cgroupProg{"sockops", o.Sockops, ebpf.AttachCGroupSockOps},
		); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown backend %q", b)
	}
	// The shared hooks last: the tracepoints only act on what the
	// backend's hooks remembered.
	return l.attachShared(l.shared)
}

// attachDNS loads the DNS programs on the ring buffer and stats of l and
// attaches them at the cgroup v2 root: they serve every backend. The
// socket hook goes first, so that every socket the packet hooks see
// after it has its owner recorded.
func (l *loaded) attachDNS(spec *ebpf.CollectionSpec, cgroupPath string) error {
	if cgroupPath == "" {
		return errors.New("-d needs a cgroup v2 hierarchy, and none is mounted")
	}
	var o struct {
		Sock   *ebpf.Program `ebpf:"tcpconnect_dns_sock"`
		Query  *ebpf.Program `ebpf:"tcpconnect_dns_query"`
		Answer *ebpf.Program `ebpf:"tcpconnect_dns"`
		Owners *ebpf.Map     `ebpf:"sock_owners"`
	}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		tcpconnectMapEvents: l.shared.Events,
		tcpconnectMapStats:  l.shared.Stats,
	}}
	if err := spec.LoadAndAssign(&o, opts); err != nil {
		return fmt.Errorf("loading the DNS programs: %w", err)
	}
	l.closers = append(l.closers, o.Sock, o.Query, o.Answer, o.Owners)
	return l.attachCgroup(cgroupPath,
		cgroupProg{"cgroup/sock_create", o.Sock, ebpf.AttachCGroupInetSockCreate},
		cgroupProg{"cgroup_skb/egress", o.Query, ebpf.AttachCGroupInetEgress},
		cgroupProg{"cgroup_skb/ingress", o.Answer, ebpf.AttachCGroupInetIngress},
	)
}

// whyObjects are the programs of attachWhy.
type whyObjects struct {
	SynOut  *ebpf.Program `ebpf:"tcpconnect_syn_out"`
	SynDrop *ebpf.Program `ebpf:"tcpconnect_syn_drop"`
	ICMP    *ebpf.Program `ebpf:"tcpconnect_icmp"`
}

// attachWhy loads and attaches the hooks that see what happens to an
// attempt's SYNs (outcome mode), on the maps of l: the SYN leaving after
// NAT (cgroup_skb/egress at the cgroup v2 root), dropped on this host
// (tp_btf/kfree_skb), and answered by an ICMP error
// (tp_btf/netif_receive_skb). None is a kprobe, so every backend has them.
func (l *loaded) attachWhy(spec *ebpf.CollectionSpec, cgroupPath string) error {
	var o whyObjects
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"attempts":    l.shared.Attempts,
		"icmp_errors": l.shared.IcmpErrors,
		".bss":        l.shared.BSS,
	}}
	if cgroupPath == "" {
		return errors.New("no cgroup v2 hierarchy to see the SYNs leave (NAT and retransmissions need one)")
	}
	if err := spec.LoadAndAssign(&o, opts); err != nil {
		return fmt.Errorf("loading the SYN hooks: %w", err)
	}
	l.closers = append(l.closers, o.SynOut, o.SynDrop, o.ICMP)
	if err := l.attachCgroup(cgroupPath, cgroupProg{"cgroup_skb/egress", o.SynOut, ebpf.AttachCGroupInetEgress}); err != nil {
		return err
	}
	lk, err := link.AttachTracing(link.TracingOptions{Program: o.SynDrop})
	if err := l.attach("tp_btf/kfree_skb", lk, err); err != nil {
		return err
	}
	lk, err = link.AttachTracing(link.TracingOptions{Program: o.ICMP})
	return l.attach("tp_btf/netif_receive_skb", lk, err)
}

func (l *loaded) closeShared() {
	o := l.shared
	l.closers = append(l.closers, o.State, &o.tcpconnectMaps, o.BSS)
}

// CgroupV2Mount returns where the cgroup v2 hierarchy is mounted, or "".
// Attaching at its root covers every process: cgroup programs are
// inherited by all descendants.
func CgroupV2Mount() string { return cgroups.Mount() }
