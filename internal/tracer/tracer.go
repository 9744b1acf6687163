// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// Config says what to trace and how. The zero value traces every attempt
// with the auto backend: the zero value of every filter is "any", and of
// every size its default.
type Config struct {
	Backend Backend
	// Filters, applied in the kernel.
	PID uint32 // 0: any
	// UIDFilter keeps only the attempts of user UID.
	UIDFilter bool
	UID       uint32
	Family    event.Family // FamilyAny: any
	Ports     []uint16     // destination ports; empty: any
	// Netns keeps attempts from tasks in this network namespace (inode).
	Netns uint32
	// CgroupFilter keeps attempts from tasks in one of Cgroups (cgroup v2
	// ids) or below it; more can be added while running (AddCgroups).
	CgroupFilter bool
	Cgroups      []uint64
	// CgroupMap and MntnsMap are paths of maps pinned by the user, as
	// bcc's --cgroupmap and --mntnsmap: the task's exact cgroup id / mount
	// namespace inode must be a key. They are read live.
	CgroupMap, MntnsMap string

	// Processes makes the tracer follow execs, forks and exits (and read
	// /proc once at start) so that each event names its process: exe,
	// arguments, parent (event.Event.Proc).
	Processes bool
	// Exe keeps attempts of processes running this executable (a clean
	// absolute path, as the process's mount namespace sees it); it
	// implies Processes. Comm keeps attempts of threads named exactly so
	// (at most 15 bytes). "": any.
	Exe  string
	Comm string

	// Outcomes makes the tracer report each attempt once its outcome is
	// known (and remember attempts in the kernel until then).
	Outcomes bool
	// Why (with Outcomes) attaches the packet hooks that fill Event.Why:
	// the SYN after NAT, its retransmissions, a local drop's reason, an
	// ICMP error. Two of them run for every packet of the host (sent,
	// received), attempt or not: measured, a loopback request/response
	// connection keeps 0.96 of its round trips. Without Why, Event.Why
	// stays empty and no packet hook runs.
	Why bool
	// OnlyFailed and MinLatency filter outcomes (with Outcomes).
	OnlyFailed bool
	MinLatency time.Duration
	// Count makes the kernel count attempts instead of sending records.
	Count bool
	// KernelMetrics makes the kernel count ended attempts (by family,
	// outcome, errno and, for MetricsPorts, destination port) and the
	// handshake latency of established ones in a histogram with bounds
	// LatencyBounds, instead of sending records (with Outcomes). Read
	// them with Metrics.
	KernelMetrics bool
	MetricsPorts  []uint16
	LatencyBounds []time.Duration

	// SyncErrors makes the sockops backend report every connect() that
	// fails before its SYN, with its errno (no route, prohibit route,
	// denial by a cgroup program that runs after ours), by attaching
	// syscalls:sys_{enter,exit}_connect. That slows every syscall of every
	// process on the host (measured: see the README), so it is off by
	// default; without it sockops reports only the failures its own hooks
	// see (no free port, denial by a cgroup program of a descendant
	// cgroup). fentry and kprobe see connect() return and need nothing
	// more: there it changes nothing.
	SyncErrors bool

	// BufferSize is the ring buffer's size in bytes: a power of two, a
	// multiple of the page size. 0: DefaultBufferSize.
	BufferSize int
	// MaxPending bounds the attempts remembered at once (Outcomes). 0:
	// DefaultMaxPending.
	MaxPending int
	// WakeupGap is the least time between two reader wakeups that the
	// kernel forces. 0: DefaultWakeupGap.
	WakeupGap time.Duration

	// DNS, if set, receives each DNS query that a socket of the host
	// sends and each answer that one receives (-d), in order with the
	// events: an answer is handed over before the connect that used it.
	// Only sockets created after Open are seen. The message is reused
	// after the call.
	DNS func(*event.DNSMessage)

	// CgroupPath is where the sockops backend attaches; "": the cgroup
	// v2 mount.
	CgroupPath string
	// Logf, if set, receives what the tracer decided and why (-v).
	Logf func(format string, args ...any)
}

// Defaults of Config's sizes; the BPF object's own map sizes are
// placeholders that Open always replaces.
const (
	DefaultBufferSize = 4 << 20
	DefaultMaxPending = 65536
	// Measured (bench/): 10 ms halves the wakeups and the tool's CPU of
	// 5 ms, and an idle connect still shows at once.
	DefaultWakeupGap = 10 * time.Millisecond
)

// maxPending bounds Config.MaxPending: the attempts map is allocated in
// full when loaded.
const maxPending = 1 << 20

// Tracer is the loaded and attached BPF side.
type Tracer struct {
	cfg     Config
	backend Backend
	objs    *loaded
	reader  *ringbuf.Reader
	procs   *procCache // nil without Config.Processes
	clock   clock
	// Start is CLOCK_MONOTONIC ns when the tracer was attached.
	start uint64
	// reasons names the kernel's drop reasons (Outcomes).
	reasons *dropReasons
	// whyErr says why the SYN hooks are not attached (Outcomes).
	whyErr error
}

// WhyUnavailable says why events carry no Why (the real destination after
// NAT, retransmissions, drops, ICMP errors) although outcomes are
// followed: the hooks that see the SYNs could not be attached. nil when
// they are, or when outcomes are not followed.
func (t *Tracer) WhyUnavailable() error { return t.whyErr }

// Open loads and attaches the programs. Close releases everything.
func Open(cfg Config) (*Tracer, error) {
	if cfg.Backend == "" {
		cfg.Backend = BackendAuto
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.WakeupGap == 0 {
		cfg.WakeupGap = DefaultWakeupGap
	}
	if cfg.CgroupPath == "" {
		cfg.CgroupPath = CgroupV2Mount()
	}
	if cfg.Exe != "" {
		cfg.Processes = true
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := checkKernel(); err != nil {
		return nil, err
	}

	spec, err := loadTcpconnect()
	if err != nil {
		return nil, err
	}
	if err := configure(spec, cfg); err != nil {
		return nil, err
	}
	pinned, opts, err := pinnedFilters(spec, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		// The collection holds its own references to the maps it uses.
		for _, m := range pinned {
			m.Close()
		}
	}()

	order := []Backend{cfg.Backend}
	if cfg.Backend == BackendAuto {
		order = Backends
	}
	var objs *loaded
	var chosen Backend
	var whyErr error
	var failures []error
	err = inPrivateMounts(logf, cfg.CgroupPath, func(cgroupPath string) error {
		for _, b := range order {
			objs, err = load(spec, b, cgroupPath, cfg.SyncErrors, opts)
			if err == nil {
				chosen = b
				break
			}
			err = fmt.Errorf("backend %s: %w", b, unavailable(b, err))
			failures = append(failures, err)
			// Why auto passed it over, or the verifier's whole log; a
			// forced backend's one-line failure is the error itself.
			if v := verboseError(err); cfg.Backend == BackendAuto || v != err.Error() {
				logf("%s", v)
			}
		}
		if objs == nil {
			if cfg.Backend != BackendAuto {
				return explain(failures[0])
			}
			return explain(fmt.Errorf("no backend works on this kernel: %w", errors.Join(failures...)))
		}
		logf("backend %s attached", chosen)
		if chosen == BackendSockops && !cfg.SyncErrors {
			logf("sockops: a connect() that fails before any SYN for lack of a route, or denied by a cgroup program that runs after ours, is not reported (--sync-errors reports it, at a cost to every syscall)")
		}
		if cfg.Outcomes && cfg.Why && !cfg.Count {
			// Outcomes do not depend on these hooks: without them (no
			// cgroup v2, a kernel older than the drop reasons of 5.17),
			// attempts are still followed, with nothing in Why.
			if whyErr = objs.attachWhy(spec, cgroupPath); whyErr != nil {
				logf("%v", whyErr)
			} else {
				logf("SYN hooks: cgroup_skb/egress on %s, tp_btf/kfree_skb, tp_btf/netif_receive_skb", cgroupPath)
			}
		}
		if cfg.DNS != nil {
			if err := objs.attachDNS(spec, cgroupPath); err != nil {
				objs.Close()
				return err
			}
			logf("DNS: cgroup/sock_create and cgroup_skb egress and ingress attached on %s", cgroupPath)
		}
		if cfg.Processes {
			if err := objs.attachProcs(spec); err != nil {
				objs.Close()
				return err
			}
			logf("processes: tp_btf sched_process_{fork,exec,exit} attached")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// The filter maps start empty, which excludes everything, so the
	// short window before they are filled loses nothing unwanted.
	one := uint8(1)
	for _, p := range cfg.Ports {
		if err := objs.shared.Ports.Put(p, one); err != nil {
			objs.Close()
			return nil, fmt.Errorf("filling the port filter: %w", err)
		}
	}
	for _, p := range cfg.MetricsPorts {
		if err := objs.shared.MetricsPorts.Put(p, one); err != nil {
			objs.Close()
			return nil, fmt.Errorf("filling the metrics ports: %w", err)
		}
	}
	for _, id := range cfg.Cgroups {
		if err := objs.shared.CgroupFilter.Put(id, one); err != nil {
			objs.Close()
			return nil, fmt.Errorf("filling the cgroup filter: %w", err)
		}
	}
	rd, err := ringbuf.NewReader(objs.shared.Events)
	if err != nil {
		objs.Close()
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	var reasons *dropReasons
	if cfg.Outcomes {
		// Without the names, reasons are printed as numbers.
		if reasons, err = loadDropReasons(); err != nil {
			logf("drop reasons will be numbers: reading enum skb_drop_reason from the kernel's BTF: %v", err)
		}
	}
	c := newClock()
	t := &Tracer{cfg: cfg, backend: chosen, objs: objs, reader: rd, clock: c, start: c.now(), reasons: reasons, whyErr: whyErr}
	if cfg.Processes {
		// After the attach: a process that execs or forks from now on is
		// entered by the kernel, which the /proc entry then leaves alone.
		fillFromProcfs(objs.shared.Procs, cfg.Exe, logf)
		t.procs = newProcCache(int(objs.shared.Procs.MaxEntries()), procCacheBytes)
	}
	return t, nil
}

// configure sets the filters and sizes in spec before load, through the
// object's own variable specs: a variable that is missing or of another
// size fails here, not in the kernel.
func configure(spec *ebpf.CollectionSpec, cfg Config) error {
	if cfg.BufferSize <= 0 || cfg.BufferSize&(cfg.BufferSize-1) != 0 || cfg.BufferSize%os.Getpagesize() != 0 {
		return fmt.Errorf("buffer size %d is not a power of two multiple of the page size (%d)", cfg.BufferSize, os.Getpagesize())
	}
	var specs tcpconnectSpecs
	if err := spec.Assign(&specs); err != nil {
		return fmt.Errorf("reading the BPF object: %w", err)
	}
	specs.Events.MaxEntries = uint32(cfg.BufferSize)
	if cfg.MaxPending < 1 || cfg.MaxPending > maxPending {
		return fmt.Errorf("max pending %d: want 1 to %d", cfg.MaxPending, maxPending)
	}
	specs.Attempts.MaxEntries = uint32(cfg.MaxPending)
	if len(cfg.Ports) > int(specs.Ports.MaxEntries) {
		return fmt.Errorf("at most %d ports can be filtered", specs.Ports.MaxEntries)
	}
	family := uint16(0)
	switch cfg.Family {
	case event.FamilyIPv4:
		family = afInet
	case event.FamilyIPv6:
		family = afInet6
	}
	var exeEnc [exeBuf]byte
	exeLen := 0
	if cfg.Exe != "" {
		enc, ok := exeComponents(cfg.Exe)
		if !ok {
			return fmt.Errorf("--exe %q: want a clean absolute path of at most %d bytes", cfg.Exe, ExeMax)
		}
		exeLen = copy(exeEnc[:], enc)
	}
	var comm [16]byte
	if len(cfg.Comm) > len(comm)-1 {
		return fmt.Errorf("--comm %q: a thread name has at most %d bytes", cfg.Comm, len(comm)-1)
	}
	copy(comm[:], cfg.Comm)
	if len(cfg.LatencyBounds) > latencyBuckets {
		return fmt.Errorf("at most %d latency buckets", latencyBuckets)
	}
	var bounds [latencyBuckets]uint64
	for i := range bounds {
		// Unused buckets get the largest bound, so they stay empty.
		bounds[i] = ^uint64(0)
		if i < len(cfg.LatencyBounds) {
			bounds[i] = uint64(cfg.LatencyBounds[i])
		}
	}
	v := &specs.tcpconnectVariableSpecs
	for _, s := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{v.FilterPid, cfg.PID},
		{v.FilterByExe, cfg.Exe != ""},
		{v.FilterExeLen, uint16(exeLen)},
		{v.FilterExe, exeEnc},
		{v.FilterByComm, cfg.Comm != ""},
		{v.FilterComm, comm},
		{v.FilterUid, cfg.UID},
		{v.FilterByUid, cfg.UIDFilter},
		{v.FilterFamily, family},
		{v.FilterByPort, len(cfg.Ports) > 0},
		{v.FilterNetns, cfg.Netns},
		{v.HostNetnsIno, hostNetnsIno()},
		{v.FilterByCgroup, cfg.CgroupFilter},
		{v.FilterByCgroupmap, cfg.CgroupMap != ""},
		{v.FilterByMntnsmap, cfg.MntnsMap != ""},
		{v.TrackOutcomes, cfg.Outcomes && !cfg.Count},
		{v.CountMode, cfg.Count},
		{v.OnlyFailed, cfg.OnlyFailed},
		{v.MinLatencyNs, uint64(cfg.MinLatency)},
		{v.WakeupGapNs, uint64(cfg.WakeupGap)},
		{v.MetricsInKernel, cfg.KernelMetrics && cfg.Outcomes && !cfg.Count},
		{v.LatencyBoundsNs, bounds},
		// A kernel without it (before 5.18) still loads the program: the
		// branch that calls it is dead code to the verifier.
		{v.HaveGetRetval, features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetRetval) == nil},
	} {
		if err := s.spec.Set(s.value); err != nil {
			return fmt.Errorf("setting %s: %w", s.spec.Name, err)
		}
	}
	return nil
}

// hostNetnsIno is the host's network namespace inode: PID 1's (the tool
// sees the host's PIDs wherever it is deployed to trace the host), else
// its own; 0 if neither can be read.
func hostNetnsIno() uint32 {
	for _, p := range []string{"/proc/1/ns/net", "/proc/self/ns/net"} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			return uint32(st.Ino)
		}
	}
	return 0
}

// pinnedFilters opens the user's pinned filter maps and makes the spec
// use them instead of its own placeholders.
func pinnedFilters(spec *ebpf.CollectionSpec, cfg Config) ([]*ebpf.Map, *ebpf.CollectionOptions, error) {
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	var pinned []*ebpf.Map
	for name, path := range map[string]string{tcpconnectMapCgroupmap: cfg.CgroupMap, tcpconnectMapMntnsmap: cfg.MntnsMap} {
		if path == "" {
			continue
		}
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			for _, p := range pinned {
				p.Close()
			}
			return nil, nil, fmt.Errorf("opening --%s %s: %w", name, path, err)
		}
		pinned = append(pinned, m)
		if m.Type() != ebpf.Hash || m.KeySize() != 8 {
			for _, p := range pinned {
				p.Close()
			}
			return nil, nil, fmt.Errorf("--%s %s: want a hash map with 8-byte keys, got %v with %d-byte keys", name, path, m.Type(), m.KeySize())
		}
		// Take the user's geometry: only the keys matter to us.
		ms := spec.Maps[name]
		ms.ValueSize, ms.MaxEntries, ms.Flags, ms.Value = m.ValueSize(), m.MaxEntries(), m.Flags(), nil
		opts.MapReplacements[name] = m
	}
	return pinned, opts, nil
}

// AddCgroups adds cgroup ids to the --cgroup/--container filter while
// running (a container that started after us).
func (t *Tracer) AddCgroups(ids []uint64) error {
	one := uint8(1)
	for _, id := range ids {
		if err := t.objs.shared.CgroupFilter.Put(id, one); err != nil {
			return fmt.Errorf("adding cgroup %d to the filter: %w", id, err)
		}
	}
	return nil
}

// Backend returns the backend that was attached.
func (t *Tracer) Backend() Backend { return t.backend }

// StartMono returns CLOCK_MONOTONIC ns when tracing started.
func (t *Tracer) StartMono() uint64 { return t.start }

// Sink receives decoded events. Event's argument is reused for the next
// record: copy what must outlive the call. Flush is called whenever the
// ring buffer has been drained, so output can be written in batches.
type Sink interface {
	Event(*event.Event) error
	Flush() error
}

// Reader timing. A record usually wakes the reader at once (see
// wakeup_gap_ns in the BPF code); records submitted without a wakeup are
// picked up by a short fallback timer while records keep coming. At idle
// the timer backs off, so an idle tracer does not spin.
const (
	activePoll = 25 * time.Millisecond
	idlePoll   = time.Second
)

// Run reads records until ctx is done (then it drains what is left) or
// sink returns an error.
func (t *Tracer) Run(ctx context.Context, sink Sink) error {
	// The reader, not t.reader: the function runs in a goroutine of its
	// own and can come after Close has cleared t.reader (a closed stdout
	// ends Run and the caller closes the tracer while ctx is cancelled);
	// Flush on a closed reader only returns an error.
	rd := t.reader
	stop := context.AfterFunc(ctx, func() {
		// Wakes a ReadInto blocked in epoll; SetDeadline would not.
		_ = rd.Flush()
	})
	defer stop()

	var (
		rec    ringbuf.Record
		ev     event.Event
		msg    event.DNSMessage
		active bool // records seen since the last timeout
	)
	t.reader.SetDeadline(time.Now().Add(idlePoll))
	for {
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if len(rec.RawSample) == 0 {
				return errors.New("empty record on the ring buffer")
			}
			if recordKind(rec.RawSample[0]) == recordProcess {
				if t.procs != nil {
					if perr := t.decodeProcRecord(rec.RawSample); perr != nil {
						return perr
					}
				}
				continue
			}
			if recordKind(rec.RawSample[0]) == recordDNS {
				if t.cfg.DNS != nil && decodeDNS(rec.RawSample, &msg) {
					t.cfg.DNS(&msg)
				}
				continue
			}
			if derr := decodeWith(rec.RawSample, t.clock, t.reasons, &ev); derr != nil {
				return derr
			}
			t.resolveProc(&ev)
			if err := sink.Event(&ev); err != nil {
				return err
			}
			if !active {
				active = true
				t.reader.SetDeadline(time.Now().Add(activePoll))
			}
			if t.reader.AvailableBytes() == 0 {
				if err := sink.Flush(); err != nil {
					return err
				}
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			if err := sink.Flush(); err != nil {
				return err
			}
			poll := idlePoll
			if active {
				poll = activePoll
			}
			active = false
			t.reader.SetDeadline(time.Now().Add(poll))
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return sink.Flush()
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return sink.Flush()
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
	}
}

// Stats sums the per-CPU counters.
func (t *Tracer) Stats() (event.Stats, error) {
	var s event.Stats
	for i, dst := range map[tcpconnectStatIndex]*uint64{
		tcpconnectStatIndexSTAT_LOST_EVENTS:   &s.LostEvents,
		tcpconnectStatIndexSTAT_LOST_ATTEMPTS: &s.LostAttempts,
		tcpconnectStatIndexSTAT_LOST_COUNTS:   &s.LostCounts,
		tcpconnectStatIndexSTAT_WAKEUPS:       &s.Wakeups,
		tcpconnectStatIndexSTAT_LOST_DNS:      &s.LostDNS,
		tcpconnectStatIndexSTAT_LOST_PROCS:    &s.LostProcs,
	} {
		var perCPU []uint64
		if err := t.objs.shared.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return s, fmt.Errorf("reading stats: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return s, nil
}

// Pending returns the attempts still waiting for an answer (Outcomes
// mode), as KindPending events with their latency so far.
func (t *Tracer) Pending() ([]event.Event, error) {
	var (
		key uint64
		val tcpconnectEvent
		out []event.Event
	)
	now := t.clock.now()
	it := t.objs.shared.Attempts.Iterate()
	for it.Next(&key, &val) {
		var e event.Event
		if err := decodeEvent(&val, t.clock, t.reasons, &e); err != nil {
			return out, err
		}
		t.resolveProc(&e)
		e.Kind = event.KindPending
		e.Result = event.ResultPending
		e.Latency = time.Duration(now - e.Mono)
		if e.Latency < t.cfg.MinLatency {
			continue
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("reading pending attempts: %w", err)
	}
	return out, nil
}

// Counts returns the in-kernel counts (Count mode).
func (t *Tracer) Counts() ([]event.Count, error) {
	var (
		key tcpconnectCountKey
		val uint64
		out []event.Count
	)
	it := t.objs.shared.Counts.Iterate()
	for it.Next(&key, &val) {
		c := event.Count{Dport: key.Dport, Connects: val}
		switch key.Family {
		case afInet:
			c.Family = event.FamilyIPv4
			c.Saddr = netip.AddrFrom4([4]byte(key.Saddr[:4]))
			c.Daddr = netip.AddrFrom4([4]byte(key.Daddr[:4]))
		default:
			c.Family = event.FamilyIPv6
			c.Saddr = netip.AddrFrom16(key.Saddr)
			c.Daddr = netip.AddrFrom16(key.Daddr)
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("reading counts: %w", err)
	}
	return out, nil
}

// Close detaches and unloads everything. Safe to call twice.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
		t.reader = nil
	}
	if t.objs != nil {
		errs = append(errs, t.objs.Close())
		t.objs = nil
	}
	return errors.Join(errs...)
}

// Attached returns the kernel IDs of the programs and links this tracer
// holds, so that -v can name them and tests can check they are gone
// after exit.
func (t *Tracer) Attached() (progs, links []uint32) {
	for _, c := range t.objs.closers {
		if p, ok := c.(*ebpf.Program); ok {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					progs = append(progs, uint32(id))
				}
			}
		}
	}
	for _, l := range t.objs.links {
		if info, err := l.Info(); err == nil {
			links = append(links, uint32(info.ID))
		}
	}
	return progs, links
}

// The slots of the latency histogram (enum latency_slot).
const (
	latencyBuckets = int(tcpconnectLatencySlotLATENCY_BUCKETS)
	latencyInf     = int(tcpconnectLatencySlotLATENCY_INF)
	latencySlots   = int(tcpconnectLatencySlotLATENCY_SLOTS)
)

// Metrics reads the kernel's counts of ended attempts.
func (t *Tracer) Metrics() (event.KernelMetrics, error) {
	var (
		m   event.KernelMetrics
		key tcpconnectOutcomeKey
		n   uint64
	)
	it := t.objs.shared.OutcomeCounts.Iterate()
	for it.Next(&key, &n) {
		fam := event.FamilyIPv6
		if key.Family == afInet {
			fam = event.FamilyIPv4
		}
		oc := event.OutcomeCount{
			Family: fam,
			Result: resultOf(tcpconnectOutcome(key.Outcome), unix.Errno(key.Err)),
			Dport:  key.Dport,
			Count:  n,
		}
		if key.DropReason != 0 {
			oc.DropReason = t.reasons.name(key.DropReason)
		}
		m.Outcomes = append(m.Outcomes, oc)
	}
	if err := it.Err(); err != nil {
		return m, fmt.Errorf("reading outcome counts: %w", err)
	}
	var perCPU []uint64
	for i := range latencySlots {
		if err := t.objs.shared.LatencyHist.Lookup(uint32(i), &perCPU); err != nil {
			return m, fmt.Errorf("reading the latency histogram: %w", err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		if i <= latencyInf {
			m.Buckets = append(m.Buckets, sum)
		} else {
			m.Sum = time.Duration(sum)
		}
	}
	return m, nil
}
