// SPDX-License-Identifier: Apache-2.0

// Command bench measures what tracing with tcpconnect costs: it makes its
// own loopback connect load (established and refused, IPv4 and IPv6, 1 to
// 16 concurrent connectors), runs it untraced and under tcpconnect in each
// output mode (and under a bpftrace reference when bpftrace works),
// interleaved and repeated, checks every reported event against the
// attempts made, and reports throughput, latency, CPU, memory, attach
// time, idle latency and wakeups as a table, JSON and a chart.
//
//	cd bench
//	go run .            # full run (root; ~10 minutes), results in bench/out/
//	go run . -quick     # smoke run (~1 minute)
//	go run . -publish   # also write bench/results.{json,md} and bench/throughput.png
//
// bench is a module of its own, so that the tool's go.mod does not list
// what only the benchmark links (gonum/plot); it builds the tool from the
// repository's root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// options are the command line.
type options struct {
	dur         time.Duration
	count       int
	rounds      int
	concs       []int
	modes       []string
	configs     []string
	idleSamples int
	waitIdle    time.Duration
	goBench     bool
	publish     bool
	keep        bool
	outDir      string
	quick       bool
	perfDir     string
	from        string
	tool        string
	variants    map[string]string // name -> binary, measured as extra table configs
	execN       int               // /bin/true runs of the exec load (0: skip)
	// bystanderDur is how long getppid() is timed per sample (the round
	// trips run twice as long); 0 skips the bystander rows.
	bystanderDur time.Duration
}

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var concs, modes, configs string
	fs.DurationVar(&o.dur, "d", 3*time.Second, "duration of each load run")
	fs.IntVar(&o.count, "n", 0, "attempts per load run instead of a duration (0: use -d)")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (untraced/traced pairs per configuration)")
	fs.StringVar(&concs, "c", "1,4,16", "concurrent connectors, comma separated")
	fs.StringVar(&modes, "modes", "established,refused", "load modes: established, refused; none: no connect rows")
	fs.StringVar(&configs, "configs", "table,json,count,metrics,bpftrace", "tracers: table, json, count (tcpconnect -c), metrics (-q --metrics-addr: counted in the kernel), bpftrace, sync-errors (table with --sync-errors); the bystander rows add -r, -w (why) and sync-errors")
	fs.DurationVar(&o.bystanderDur, "bystander", time.Second, "bystander rows: time getppid() this long per sample, then round trips for twice as long (0: skip)")
	fs.IntVar(&o.idleSamples, "idle", 20, "idle single-connect latency samples per output mode (0: skip)")
	fs.DurationVar(&o.waitIdle, "wait-idle", 20*time.Minute, "wait up to this long for QEMU (other engineers' kernel tests) to finish before measuring (0: do not wait)")
	fs.BoolVar(&o.goBench, "gobench", true, "also run the user-space Go benchmarks (go test -bench)")
	fs.BoolVar(&o.publish, "publish", false, "also write bench/results.json, bench/results.md and bench/throughput.png")
	fs.BoolVar(&o.keep, "keep", false, "keep the tracers' output files in the output directory")
	fs.StringVar(&o.outDir, "out", "bench/out", "output directory")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: short runs, one round, 1 and 4 connectors, few idle samples, no Go benchmarks")
	fs.StringVar(&o.perfDir, "perf", "", "record `perf record -g` of the tracer during each traced run into this directory")
	fs.IntVar(&o.execN, "exec", 10000, "execs of /bin/true in the exec-load loop, untraced and traced (0: skip)")
	var variants string
	fs.StringVar(&variants, "variant", "", "also measure other tcpconnect binaries in table mode, interleaved with the rest: NAME=PATH[,NAME=PATH…] (configs table:NAME)")
	fs.StringVar(&o.tool, "tool", "", "use this tcpconnect binary instead of building one (for trying a change)")
	fs.StringVar(&o.from, "from", "HEAD", "build tcpconnect from this git revision (a clean export), or from the work tree as it is with \"worktree\"")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.quick {
		// Only what was not set explicitly changes.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["d"] {
			o.dur = 500 * time.Millisecond
		}
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["c"] {
			concs = "1,4"
		}
		if !set["idle"] {
			o.idleSamples = 5
		}
		if !set["gobench"] {
			o.goBench = false
		}
		if !set["wait-idle"] {
			o.waitIdle = 0
		}
		if !set["exec"] {
			o.execN = 1000
		}
		if !set["bystander"] {
			o.bystanderDur = 200 * time.Millisecond
		}
	}
	for _, s := range strings.Split(concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 256 {
			return nil, fmt.Errorf("bad concurrency %q", s)
		}
		o.concs = append(o.concs, n)
	}
	for _, m := range strings.Split(modes, ",") {
		if m == "none" && modes == "none" {
			break // bystander rows (and idle latency) only
		}
		if m != modeEstablished && m != modeRefused {
			return nil, fmt.Errorf("bad mode %q", m)
		}
		o.modes = append(o.modes, m)
	}
	for _, c := range strings.Split(configs, ",") {
		switch c {
		case "table", "json", "count", "metrics", "bpftrace", "sync-errors":
		default:
			return nil, fmt.Errorf("bad config %q", c)
		}
		o.configs = append(o.configs, c)
	}
	if o.rounds < 1 {
		return nil, errors.New("-rounds must be at least 1")
	}
	if variants != "" {
		o.variants = map[string]string{}
		for _, v := range strings.Split(variants, ",") {
			name, path, ok := strings.Cut(v, "=")
			if !ok || name == "" || path == "" {
				return nil, fmt.Errorf("bad -variant %q: want NAME=PATH", v)
			}
			o.variants[name] = path
			o.configs = append(o.configs, "table:"+name)
		}
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		stop()
		os.Exit(1)
	}
}

// bench holds what a run needs everywhere.
type bench struct {
	o        *options
	root     string
	tmp      string
	toolBin  string
	btScript string
	configs  []tracerConfig
	logf     func(string, ...any)
	waited   time.Duration // spent waiting for QEMU to finish
	// attachRetries counts tracers that failed to attach the first time.
	attachRetries int
}

func run(ctx context.Context, o *options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it loads BPF programs and opens an AF_PACKET socket)")
	}
	root, err := findRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(o.outDir) {
		o.outDir = filepath.Join(root, o.outDir)
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return fmt.Errorf("creating the output directory: %w", err)
	}
	tmp, err := os.MkdirTemp("", "tcpconnect-bench-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, root: root, tmp: tmp, logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "%s "+f+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}}

	res := &Results{Started: time.Now().UTC(), Params: paramsOf(o)}
	res.Machine = machineInfo(root)

	if o.tool != "" {
		if b.toolBin, err = filepath.Abs(o.tool); err != nil {
			return fmt.Errorf("resolving -tool: %w", err)
		}
		res.Machine.Commit = "binary " + o.tool
	} else {
		b.toolBin = filepath.Join(tmp, "tcpconnect")
		if res.Machine.Commit, err = buildTool(root, o.from, tmp, b.toolBin); err != nil {
			return err
		}
		b.logf("built tcpconnect from %s", res.Machine.Commit)
	}

	unmount, err := b.setupConfigs(res)
	if err != nil {
		return err
	}
	defer unmount()

	if err := b.waitForIdle(ctx, res); err != nil {
		return err
	}
	res.Machine.QEMUAtStart = qemuBusy()
	res.Machine.LoadAvgAtStart = loadAvg()

	for _, mode := range o.modes {
		for _, conc := range o.concs {
			var (
				rows []Row
				runs []runRecord
			)
			// A block that QEMU disturbed is measured again once QEMU is
			// gone, while the waiting budget lasts.
			for try := 0; ; try++ {
				if err := b.waitForIdle(ctx, res); err != nil {
					return err
				}
				rows, runs, err = b.measure(ctx, mode, conc)
				if err != nil {
					return err
				}
				disturbed := 0
				for _, r := range runs {
					if r.QEMU {
						disturbed++
					}
				}
				if disturbed == 0 || try == 2 || b.waited >= o.waitIdle {
					break
				}
				b.logf("QEMU ran during %d runs of %s c=%d: measuring the block again", disturbed, mode, conc)
				res.Machine.BlocksRedone++
			}
			res.Rows = append(res.Rows, rows...)
			res.Runs = append(res.Runs, runs...)
			for _, r := range runs {
				if r.QEMU {
					res.Machine.RunsWithQEMU++
				}
			}
		}
	}
	if o.bystanderDur > 0 {
		if err := b.waitForIdle(ctx, res); err != nil {
			return err
		}
		res.Bystanders, res.BystanderRuns, err = b.measureBystanders(ctx)
		if err != nil {
			return err
		}
		for _, r := range res.BystanderRuns {
			if r.QEMU {
				res.Machine.RunsWithQEMU++
			}
			if len(r.Foreign) > 0 {
				res.Machine.BystanderRunsHooked++
			}
		}
	}
	if o.idleSamples > 0 {
		if err := b.waitForIdle(ctx, res); err != nil {
			return err
		}
		for _, name := range []string{"table", "json"} {
			if !contains(o.configs, name) {
				continue
			}
			idle, err := b.idleLatency(ctx, b.config(name))
			if err != nil {
				return err
			}
			res.Idle = append(res.Idle, idle)
		}
	}
	if o.execN > 0 {
		if err := b.waitForIdle(ctx, res); err != nil {
			return err
		}
		if res.Exec, err = b.execLoad(ctx); err != nil {
			return err
		}
	}
	if o.goBench {
		if err := b.waitForIdle(ctx, res); err != nil {
			return err
		}
		b.logf("running the Go benchmarks")
		res.GoBench, err = runGoBench(root)
		if err != nil {
			return err
		}
	}
	res.Finished = time.Now().UTC()
	res.Machine.AttachRetries = b.attachRetries
	res.Machine.QEMUAtEnd = qemuBusy()
	res.Targets = evaluate(res)

	return b.write(res)
}

// findRoot returns the module root: the directory holding go.mod, from
// the working directory up.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getting the working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "tcpconnect")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the tcpconnect module (no go.mod with cmd/tcpconnect above the working directory)")
		}
		dir = parent
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// setupConfigs prepares the tracers; bpftrace is dropped with a reason
// when it is missing or cannot attach. It returns a function that undoes
// what it changed on the host (a tracefs mount made for bpftrace).
func (b *bench) setupConfigs(res *Results) (func(), error) {
	undo := func() {}
	for _, name := range b.o.configs {
		switch name {
		case "table":
			b.configs = append(b.configs, tracerConfig{Name: name, parse: parseTable})
		case "json":
			b.configs = append(b.configs, tracerConfig{Name: name, Args: []string{"--json"}, parse: parseJSON})
		case "count":
			b.configs = append(b.configs, tracerConfig{Name: name, Args: []string{"-c"}, parse: parseCounts})
		case "metrics":
			b.configs = append(b.configs, tracerConfig{Name: name, Args: []string{"-q", "--metrics-addr", "127.0.0.1:0"}, parse: parseNothing, scrape: true})
		case "sync-errors":
			// Table mode with the syscall tracepoints of --sync-errors.
			b.configs = append(b.configs, tracerConfig{Name: name, Args: []string{"--sync-errors"}, parse: parseTable})
		case "bpftrace":
			u, err := b.setupBpftrace(res)
			if err != nil {
				res.Machine.BpftraceSkipped = err.Error()
				b.logf("bpftrace reference skipped: %v", err)
				continue
			}
			undo = u
			b.configs = append(b.configs, tracerConfig{Name: name, parse: parseBpftrace, bpftrace: true})
		default: // table:NAME, from -variant
			name := strings.TrimPrefix(name, "table:")
			bin, err := filepath.Abs(b.o.variants[name])
			if err != nil {
				return undo, fmt.Errorf("resolving variant %s: %w", name, err)
			}
			b.configs = append(b.configs, tracerConfig{Name: "table:" + name, parse: parseTable, bin: bin})
		}
	}
	return undo, nil
}

func (b *bench) config(name string) tracerConfig {
	for _, c := range b.configs {
		if c.Name == name {
			return c
		}
	}
	return tracerConfig{Name: name}
}

func (b *bench) argv(c tracerConfig) []string {
	if c.bpftrace {
		// -B full: bpftrace's default for a file, and what a user
		// redirecting it would get.
		return []string{"bpftrace", "-B", "full", b.btScript}
	}
	if c.bin != "" {
		return append([]string{c.bin}, c.Args...)
	}
	return append([]string{b.toolBin}, c.Args...)
}

// waitForIdle waits until no QEMU runs (other engineers' kernel tests eat
// both cores), polling every 30 s, within one budget (-wait-idle) for the
// whole benchmark; it is called before the first run and again before
// each block of runs. What it saw goes into the results.
func (b *bench) waitForIdle(ctx context.Context, res *Results) error {
	if !qemuBusy() {
		return nil
	}
	start := time.Now()
	for qemuBusy() {
		if b.waited+time.Since(start) >= b.o.waitIdle {
			if b.o.waitIdle > 0 {
				b.logf("QEMU still running after waiting %v in all; measuring anyway (recorded in the results)", b.o.waitIdle)
			}
			break
		}
		b.logf("QEMU is running; waiting (polling every 30 s, %v of %v used)", (b.waited + time.Since(start)).Round(time.Second), b.o.waitIdle)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
		}
	}
	b.waited += time.Since(start)
	res.Machine.WaitedForIdle = b.waited.Round(time.Second).String()
	return nil
}

// runRecord is one load run, traced or not.
type runRecord struct {
	Mode   string      `json:"mode"`
	Conc   int         `json:"conc"`
	Round  int         `json:"round"`
	Config string      `json:"config"` // "untraced" or the tracer
	Load   *loadResult `json:"load"`
	// QEMU says whether QEMU used more than 2% of a CPU during the run
	// (QEMUCPU: how much).
	QEMU    bool          `json:"qemu_busy"`
	QEMUCPU time.Duration `json:"qemu_cpu_ns"`

	IWIPerSec float64 `json:"iwi_per_s"`
	RESPerSec float64 `json:"res_per_s"`
	// ForcedPerSec is the tool's own count of wakeups its BPF programs
	// forced (read from its stats map), per second of load.
	ForcedPerSec *float64 `json:"forced_wakeups_per_s,omitempty"`
	// Context switches of the tracer's threads per second of load, in
	// all and of its busiest thread.
	CtxPerSec        float64 `json:"tracer_ctx_switches_per_s,omitempty"`
	CtxBusiestPerSec float64 `json:"tracer_busiest_thread_ctx_switches_per_s,omitempty"`

	// Tracer measures (traced runs only).
	AttachMs      float64  `json:"attach_ms,omitempty"`
	CPUSeconds    float64  `json:"cpu_s_during_load,omitempty"`
	CPUTotal      float64  `json:"cpu_s_total,omitempty"`
	Events        int      `json:"events,omitempty"`
	CPUPer100k    float64  `json:"cpu_s_per_100k_events,omitempty"`
	MaxRSSMiB     float64  `json:"vm_hwm_mib,omitempty"`
	Match         *match   `json:"match,omitempty"`
	Lines         int      `json:"lines,omitempty"`
	Garbled       int      `json:"garbled,omitempty"`
	FirstGarbled  string   `json:"first_garbled,omitempty"`
	Printed       uint64   `json:"printed,omitempty"`
	Lost          uint64   `json:"lost"`
	SummarySeen   bool     `json:"summary_seen,omitempty"`
	ExitCode      int      `json:"exit_code"`
	Killed        bool     `json:"killed,omitempty"`
	StderrOther   []string `json:"stderr_other,omitempty"`
	MissingSample []string `json:"-"`
}

// measure runs the interleaved rounds for one mode and concurrency:
// U T1 T2 … Tk U T… … U, the order of the tracers rotating per round, so
// that every traced run sits between two untraced runs, which it is
// compared with.
func (b *bench) measure(ctx context.Context, mode string, conc int) ([]Row, []runRecord, error) {
	spec := loadSpec{mode: mode, conc: conc, dur: b.o.dur, count: b.o.count}
	var runs []runRecord
	untraced := make([]*runRecord, 0, b.o.rounds+1)
	traced := make(map[string][]*runRecord)
	for r := 0; r <= b.o.rounds; r++ {
		u, err := b.untracedRun(spec, r)
		if err != nil {
			return nil, nil, err
		}
		untraced = append(untraced, u)
		b.logf("%s c=%d round %d untraced: %.0f/s p99 %.0f µs", mode, conc, r, u.Load.Rate, u.Load.P99us)
		if r == b.o.rounds {
			break
		}
		for i := range b.configs {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			c := b.configs[(i+r)%len(b.configs)]
			t, err := b.tracedRun(ctx, spec, r, c)
			if err != nil {
				return nil, nil, err
			}
			traced[c.Name] = append(traced[c.Name], t)
			b.logf("%s c=%d round %d %s: %.0f/s p99 %.0f µs, %d/%d matched, %d lost, cpu %.3f s/100k, attach %.0f ms, %.0f ctx sw/s (busiest thread %.0f)",
				mode, conc, r, c.Name, t.Load.Rate, t.Load.P99us, t.Match.Matched, t.Match.Attempts, t.Lost, t.CPUPer100k, t.AttachMs, t.CtxPerSec, t.CtxBusiestPerSec)
		}
	}
	for _, u := range untraced {
		runs = append(runs, *u)
	}
	for _, c := range b.configs {
		for _, t := range traced[c.Name] {
			runs = append(runs, *t)
		}
	}
	return summarize(mode, conc, b.configs, untraced, traced), runs, nil
}

// loadCountingInterrupts runs the load and returns it with the IRQ-work
// (IWI) and rescheduling (RES) interrupts raised meanwhile.
func loadCountingInterrupts(spec loadSpec) (l *loadResult, iwi, res uint64, err error) {
	iwi0, res0, err := interrupts()
	if err != nil {
		return nil, 0, 0, err
	}
	l, err = runLoad(spec)
	if err != nil {
		return nil, 0, 0, err
	}
	iwi1, res1, err := interrupts()
	if err != nil {
		return nil, 0, 0, err
	}
	return l, iwi1 - iwi0, res1 - res0, nil
}

func (b *bench) untracedRun(spec loadSpec, round int) (*runRecord, error) {
	rec := &runRecord{Mode: spec.mode, Conc: spec.conc, Round: round, Config: "untraced"}
	qw := startQEMUWatch()
	load, iwi, res, err := loadCountingInterrupts(spec)
	if err != nil {
		return nil, err
	}
	rec.Load = load
	rec.QEMU, rec.QEMUCPU = qw.busy()
	secs := rec.Load.Elapsed.Seconds()
	rec.IWIPerSec, rec.RESPerSec = float64(iwi)/secs, float64(res)/secs
	return rec, nil
}

func (b *bench) tracedRun(ctx context.Context, spec loadSpec, round int, c tracerConfig) (*runRecord, error) {
	rec := &runRecord{Mode: spec.mode, Conc: spec.conc, Round: round, Config: c.Name}
	qw := startQEMUWatch()
	outPath := filepath.Join(b.tmp, fmt.Sprintf("%s-c%d-r%d-%s.out", spec.mode, spec.conc, round, c.Name))
	if b.o.keep {
		outPath = filepath.Join(b.o.outDir, filepath.Base(outPath))
	}
	out, err := os.Create(outPath)
	if err != nil {
		return nil, fmt.Errorf("creating the tracer output file: %w", err)
	}
	defer out.Close()
	p, attach, err := b.startAttached(c, out)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = p.stop(10 * time.Second)
		}
	}()
	rec.AttachMs = float64(attach.Microseconds()) / 1e3
	// The tracer's reader starts right after it says it is attached.
	time.Sleep(100 * time.Millisecond)

	var perf *exec.Cmd
	if b.o.perfDir != "" {
		perf, err = startPerf(b.o.perfDir, p.cmd.Process.Pid, fmt.Sprintf("%s-c%d-r%d-%s", spec.mode, spec.conc, round, c.Name))
		if err != nil {
			return nil, err
		}
	}
	cpu0, err := p.cpuTime()
	if err != nil {
		return nil, err
	}
	forced0, forcedOK := forcedWakeups(p.cmd.Process.Pid)
	ctx0 := ctxSwitches(p.cmd.Process.Pid)
	var iwi, res uint64
	rec.Load, iwi, res, err = loadCountingInterrupts(spec)
	if err != nil {
		return nil, err
	}
	cpu1, err := p.cpuTime()
	if err != nil {
		return nil, err
	}
	rec.QEMU, rec.QEMUCPU = qw.busy()
	rec.CtxPerSec, rec.CtxBusiestPerSec = ctxDelta(ctx0, ctxSwitches(p.cmd.Process.Pid), rec.Load.Elapsed.Seconds())
	if forced1, ok := forcedWakeups(p.cmd.Process.Pid); ok && forcedOK {
		v := float64(forced1-forced0) / rec.Load.Elapsed.Seconds()
		rec.ForcedPerSec = &v
	}
	if perf != nil {
		stopPerf(perf)
	}
	secs := rec.Load.Elapsed.Seconds()
	rec.IWIPerSec, rec.RESPerSec = float64(iwi)/secs, float64(res)/secs
	rec.CPUSeconds = (cpu1 - cpu0).Seconds()

	// The tracer's own peak, read before it exits: wait4's ru_maxrss would
	// include the benchmark's RSS, which the child inherits until exec.
	hwm, err := vmHWM(p.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	rec.MaxRSSMiB = float64(hwm) / 1024
	var scraped uint64
	if c.scrape {
		// The metrics count attempts that ended; the load's are all over.
		if scraped, err = p.scrapeConnects(); err != nil {
			return nil, err
		}
	}
	st, err := p.stop(20 * time.Second)
	stopped = true
	if err != nil {
		return nil, err
	}
	rec.ExitCode, rec.Killed = st.exitCode, st.killed
	rec.CPUTotal = st.cpu.Seconds()
	rec.Printed, rec.Lost, rec.SummarySeen = parseSummary(st.stderr)
	for _, l := range st.stderr {
		if strings.HasPrefix(l, "Tracing tcp connections") || summaryRE.MatchString(l) ||
			strings.HasPrefix(l, "Attaching ") || strings.Contains(l, "RLIMIT_MEMLOCK") {
			continue
		}
		rec.StderrOther = append(rec.StderrOther, l)
	}
	if rec.ExitCode != 0 {
		return nil, fmt.Errorf("%s exited with %d: %s", c.Name, rec.ExitCode, strings.Join(st.stderr, " | "))
	}

	if _, err := out.Seek(0, 0); err != nil {
		return nil, fmt.Errorf("rewinding the tracer output: %w", err)
	}
	parsedOut, err := c.parse(out)
	if err != nil {
		return nil, err
	}
	var m match
	switch {
	case c.scrape:
		m = matchTotal(rec.Load.ports, scraped)
	case c.Name == "count":
		m = matchCounts(rec.Load.ports, parsedOut.counts, rec.Load.dports)
	default:
		m = matchEvents(rec.Load.ports, parsedOut.events, rec.Load.dports)
	}
	rec.Match = &m
	rec.Lines, rec.Garbled, rec.FirstGarbled = parsedOut.lines, parsedOut.garbled, parsedOut.firstGarbled
	if c.bpftrace {
		rec.Lost = parsedOut.lost
	}
	rec.Events = m.Matched + m.Extra + m.Foreign
	if rec.Events > 0 {
		rec.CPUPer100k = rec.CPUSeconds / float64(rec.Events) * 1e5
	}
	if !b.o.keep {
		_ = os.Remove(outPath)
	}
	return rec, ctx.Err()
}

// startAttached starts the tracer and waits until it is attached. A
// tracer that fails to attach is tried once more: other people's tests on
// this machine start tcpconnect too, and concurrent instances once raced
// on a shared temporary tracefs mount (before 089643d mounted it in a
// private namespace); a retry is counted in the results.
func (b *bench) startAttached(c tracerConfig, out *os.File) (*tracerProc, time.Duration, error) {
	for try := 0; ; try++ {
		if err := out.Truncate(0); err != nil {
			return nil, 0, fmt.Errorf("truncating the tracer output: %w", err)
		}
		if _, err := out.Seek(0, 0); err != nil {
			return nil, 0, fmt.Errorf("rewinding the tracer output: %w", err)
		}
		p, err := startTracer(c, b.argv(c), out)
		if err != nil {
			return nil, 0, err
		}
		attach, err := p.waitAttached(15 * time.Second)
		if err == nil {
			return p, attach, nil
		}
		_, _ = p.stop(10 * time.Second)
		if try == 1 {
			return nil, 0, err
		}
		b.logf("%s did not attach, trying once more: %v", c.Name, err)
		b.attachRetries++
		time.Sleep(time.Second)
	}
}

// Row is the summary of one tracer (or untraced) at one mode and
// concurrency, over all rounds.
type Row struct {
	Mode   string `json:"mode"`
	Conc   int    `json:"conc"`
	Config string `json:"config"`

	UntracedRate num   `json:"untraced_connects_per_s"` // median of the untraced runs
	Rate         num   `json:"connects_per_s"`          // median of this config's runs
	Ratio        num   `json:"throughput_ratio"`        // median over rounds of traced / bracketing untraced
	RatioRuns    []num `json:"throughput_ratio_runs,omitempty"`
	P99us        num   `json:"p99_us"`
	P99Ratio     num   `json:"p99_ratio"`
	P99RatioRuns []num `json:"p99_ratio_runs,omitempty"`

	Match        match  `json:"match"`
	Lost         uint64 `json:"lost"`
	Garbled      int    `json:"garbled"`
	CPUPer100k   num    `json:"cpu_s_per_100k_events"`
	MaxRSSMiB    num    `json:"max_rss_mib"`
	AttachMs     num    `json:"attach_ms"`     // median
	AttachMaxMs  num    `json:"attach_max_ms"` // worst
	IWIPerSec    num    `json:"iwi_per_s"`
	RESPerSec    num    `json:"res_per_s"`
	ForcedPerSec num    `json:"forced_wakeups_per_s"`
	CtxPerSec    num    `json:"tracer_ctx_switches_per_s"`
	CaptureDrops uint32 `json:"capture_drops,omitempty"`
	LoadErrors   int    `json:"load_errors,omitempty"`
}

func summarize(mode string, conc int, configs []tracerConfig, untraced []*runRecord, traced map[string][]*runRecord) []Row {
	var uRates, uP99, uIWI, uRES []float64
	for _, u := range untraced {
		uRates = append(uRates, u.Load.Rate)
		uP99 = append(uP99, u.Load.P99us)
		uIWI = append(uIWI, u.IWIPerSec)
		uRES = append(uRES, u.RESPerSec)
	}
	nan := num(math.NaN())
	rows := []Row{{
		Mode: mode, Conc: conc, Config: "untraced",
		UntracedRate: num(median(uRates)), Rate: num(median(uRates)), Ratio: 1,
		P99us: num(median(uP99)), P99Ratio: 1,
		IWIPerSec: num(median(uIWI)), RESPerSec: num(median(uRES)),
		CPUPer100k: nan, MaxRSSMiB: nan, AttachMs: nan, AttachMaxMs: nan, ForcedPerSec: nan, CtxPerSec: nan,
	}}
	for _, u := range untraced {
		rows[0].CaptureDrops += u.Load.CaptureDrops
		rows[0].LoadErrors += errCount(u.Load)
	}
	for _, c := range configs {
		ts := traced[c.Name]
		if len(ts) == 0 {
			continue
		}
		row := Row{Mode: mode, Conc: conc, Config: c.Name, UntracedRate: num(median(uRates))}
		var rates, p99s, cpu, rss, attach, iwi, res, ratios, p99r, forced, ctxs []float64
		for _, t := range ts {
			// t ran in round t.Round: between untraced runs Round and
			// Round+1.
			u0, u1 := untraced[t.Round], untraced[t.Round+1]
			ratios = append(ratios, ratio(t.Load.Rate, (u0.Load.Rate+u1.Load.Rate)/2))
			p99r = append(p99r, ratio(t.Load.P99us, (u0.Load.P99us+u1.Load.P99us)/2))
			rates = append(rates, t.Load.Rate)
			p99s = append(p99s, t.Load.P99us)
			cpu = append(cpu, nanIfZero(t.CPUPer100k, t.Events))
			rss = append(rss, t.MaxRSSMiB)
			attach = append(attach, t.AttachMs)
			iwi = append(iwi, t.IWIPerSec)
			res = append(res, t.RESPerSec)
			ctxs = append(ctxs, t.CtxPerSec)
			if t.ForcedPerSec != nil {
				forced = append(forced, *t.ForcedPerSec)
			}
			row.Match.add(*t.Match)
			row.Lost += t.Lost
			row.Garbled += t.Garbled
			row.CaptureDrops += t.Load.CaptureDrops
			row.LoadErrors += errCount(t.Load)
		}
		row.RatioRuns, row.P99RatioRuns = nums(ratios), nums(p99r)
		row.Rate, row.Ratio = num(median(rates)), num(median(ratios))
		row.P99us, row.P99Ratio = num(median(p99s)), num(median(p99r))
		row.CPUPer100k, row.MaxRSSMiB = num(median(cpu)), num(maxOf(rss))
		row.AttachMs, row.AttachMaxMs = num(median(attach)), num(maxOf(attach))
		row.IWIPerSec, row.RESPerSec = num(median(iwi)), num(median(res))
		row.ForcedPerSec, row.CtxPerSec = num(median(forced)), num(median(ctxs))
		rows = append(rows, row)
	}
	return rows
}

func nanIfZero(v float64, events int) float64 {
	if events == 0 {
		return math.NaN()
	}
	return v
}

func errCount(l *loadResult) int {
	n := 0
	for _, v := range l.Errors {
		n += v
	}
	return n
}

// machineInfo records what the numbers were measured on.
func machineInfo(root string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.Command("bpftrace", "--version").Output(); err == nil {
		m.Bpftrace = strings.TrimSpace(string(out))
	}
	return m
}

// buildTool builds cmd/tcpconnect into bin, from a clean export of the
// git revision from (so that other people's uncommitted work in the tree
// is not measured), or from the work tree itself. It returns what was
// built, for the report.
func buildTool(root, from, tmp, bin string) (string, error) {
	dir := root
	desc := "work tree"
	if from != "worktree" {
		rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", from).Output()
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", from, err)
		}
		desc = strings.TrimSpace(string(rev))
		dir = filepath.Join(tmp, "src")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating the source directory: %w", err)
		}
		export := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, desc, dir)
		if out, err := export.CombinedOutput(); err != nil {
			return "", fmt.Errorf("exporting %s: %w: %s", desc, err, out)
		}
	} else if rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		desc = strings.TrimSpace(string(rev)) + " + work tree"
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/tcpconnect")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building tcpconnect from %s: %w: %s", desc, err, out)
	}
	return desc, nil
}

// startPerf records the tracer's stacks while the load runs.
func startPerf(dir string, pid int, name string) (*exec.Cmd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the perf directory: %w", err)
	}
	cmd := exec.Command("perf", "record", "-q", "-g", "-F", "4999", "-p", strconv.Itoa(pid), "-o", filepath.Join(dir, name+".perf.data"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting perf: %w", err)
	}
	// perf needs a moment to open its events.
	time.Sleep(200 * time.Millisecond)
	return cmd, nil
}

func stopPerf(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
}
