// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// tracerConfig is one way of tracing the load.
type tracerConfig struct {
	Name string   // table, json, count, bpftrace
	Args []string // after the binary
	// parse reads what the tracer wrote to stdout.
	parse func(io.Reader) (*parsed, error)
	// bpftrace marks the reference, whose attach is seen differently.
	bpftrace bool
	// bin, if set, is a tcpconnect binary other than the one built.
	bin string
	// scrape: the tracer prints nothing; its counts are read from its
	// /metrics before it stops (metrics-only mode).
	scrape bool
}

// tracerProc is one running tracer that this benchmark started. Only such
// processes are ever signalled.
type tracerProc struct {
	cfg     tracerConfig
	cmd     *exec.Cmd
	started time.Time

	attached chan struct{} // closed when the tracer says it is attached
	attachAt time.Duration

	stderrDone chan struct{}
	mu         sync.Mutex
	stderr     []string
}

// startTracer starts argv with stdout to out (a file or a pipe's write
// end) and follows its stderr.
func startTracer(cfg tracerConfig, argv []string, stdout *os.File) (*tracerProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = stdout
	// Its own process group: a Ctrl-C at the terminal reaches only the
	// benchmark, which then stops the tracer itself and waits for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	p := &tracerProc{cfg: cfg, cmd: cmd, attached: make(chan struct{}), stderrDone: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	go p.readStderr(errPipe)
	if cfg.bpftrace {
		go p.watchBpftrace()
	}
	return p, nil
}

func (p *tracerProc) readStderr(r io.Reader) {
	defer close(p.stderrDone)
	sc := bufio.NewScanner(r)
	once := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.stderr = append(p.stderr, line)
		p.mu.Unlock()
		// tcpconnect prints this once its programs are attached, in every
		// output mode ("Tracing tcp connections[, counting them]. …").
		if !once && !p.cfg.bpftrace && strings.HasPrefix(line, "Tracing tcp connections") {
			once = true
			p.attachAt = time.Since(p.started)
			close(p.attached)
		}
	}
	// Drain the rest if the scanner stopped on a very long line.
	_, _ = io.Copy(io.Discard, r)
}

// watchBpftrace decides when bpftrace is attached. Its output is fully
// buffered to a file, so what BEGIN prints cannot be seen; instead, once
// it said "Attaching", wait for the tracepoint's perf event: bpftrace 0.17
// opens one perf buffer per CPU first, then one perf event per
// tracepoint, so ncpu+1 perf_event descriptors mean attached.
func (p *tracerProc) watchBpftrace() {
	want := runtime.NumCPU() + 1
	dir := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
	for time.Since(p.started) < 30*time.Second {
		if n, err := countPerfEvents(dir); err != nil {
			return // exited
		} else if n >= want {
			p.attachAt = time.Since(p.started)
			close(p.attached)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countPerfEvents(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "anon_inode:[perf_event]" {
			n++
		}
	}
	return n, nil
}

// waitAttached waits until the tracer is attached and returns how long
// that took from its start.
func (p *tracerProc) waitAttached(timeout time.Duration) (time.Duration, error) {
	select {
	case <-p.attached:
		return p.attachAt, nil
	case <-p.stderrDone:
		// stderr closed: the tracer exited (or closed stderr) without
		// saying it attached.
		select {
		case <-p.attached:
			return p.attachAt, nil
		default:
		}
		return 0, fmt.Errorf("%s exited before attaching: %s", p.cfg.Name, strings.Join(p.stderrLines(), " | "))
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s not attached after %v: %s", p.cfg.Name, timeout, strings.Join(p.stderrLines(), " | "))
	}
}

func (p *tracerProc) stderrLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.stderr)
}

// cpuTime returns the CPU time the tracer's threads have used, in
// nanoseconds, from /proc/PID/task/*/schedstat (exact, unlike the 10 ms
// ticks of /proc/PID/stat).
func (p *tracerProc) cpuTime() (time.Duration, error) {
	return procCPU(p.cmd.Process.Pid)
}

func procCPU(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("listing threads: %w", err)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // thread gone
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing schedstat: %w", err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// stopResult is how a tracer ended.
type stopResult struct {
	exitCode int
	cpu      time.Duration // utime+stime over the whole life (rusage)
	stderr   []string
	killed   bool
}

// stop sends SIGINT and waits for the exit; after timeout it kills the
// process (ours) and says so.
func (p *tracerProc) stop(timeout time.Duration) (stopResult, error) {
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return stopResult{}, fmt.Errorf("signalling %s: %w", p.cfg.Name, err)
	}
	var res stopResult
	waited := make(chan error, 1)
	go func() {
		<-p.stderrDone // Wait must not run before stderr is read to EOF
		waited <- p.cmd.Wait()
	}()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(timeout):
		res.killed = true
		_ = p.cmd.Process.Kill()
		werr = <-waited
	}
	if st := p.cmd.ProcessState; st != nil {
		res.exitCode = st.ExitCode()
		res.cpu = st.UserTime() + st.SystemTime()
	}
	res.stderr = p.stderrLines()
	var exitErr *exec.ExitError
	if werr != nil && !errors.As(werr, &exitErr) {
		return res, fmt.Errorf("waiting for %s: %w", p.cfg.Name, werr)
	}
	return res, nil
}

// vmHWM returns the peak resident set of pid in KiB (VmHWM).
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the tracer's status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in the tracer's status")
}

// interrupts returns the per-second interesting rows of /proc/interrupts,
// summed over CPUs: IWI (IRQ work: what a forced ring buffer or perf
// buffer wakeup raises) and RES (rescheduling IPIs).
func interrupts() (iwi, res uint64, err error) {
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/interrupts: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var dst *uint64
		switch f[0] {
		case "IWI:":
			dst = &iwi
		case "RES:":
			dst = &res
		default:
			continue
		}
		for _, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				break // the description after the counts
			}
			*dst += n
		}
	}
	return iwi, res, nil
}

// qemuCPU returns whether a QEMU (another engineer's kernel tests, as
// `pgrep -f qemu-system` finds them) is running, and the CPU time all of
// them have used so far.
func qemuCPU() (bool, time.Duration) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, 0
	}
	found := false
	var total time.Duration
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "qemu-system") {
			continue
		}
		found = true
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			stime, _ := strconv.ParseInt(f[12], 10, 64)
			total += time.Duration(ut+stime) * 10 * time.Millisecond // USER_HZ 100
		}
	}
	return found, total
}

// qemuWatch tells whether QEMU competed for the CPUs over an interval: a
// QEMU that exists but does not run (a finished guest not yet reaped, a
// guest waiting on a timer) does not disturb a measurement, so only its
// CPU use counts.
type qemuWatch struct {
	start   time.Time
	cpu     time.Duration
	present bool
}

func startQEMUWatch() qemuWatch {
	present, cpu := qemuCPU()
	return qemuWatch{start: time.Now(), cpu: cpu, present: present}
}

// busy reports whether QEMU used more than 2% of one CPU since the start.
func (w qemuWatch) busy() (bool, time.Duration) {
	present, cpu := qemuCPU()
	if !present && !w.present {
		return false, 0
	}
	used := max(cpu-w.cpu, 0)
	return used > time.Since(w.start)/50, used
}

// qemuBusy samples QEMU's CPU use for a moment.
func qemuBusy() bool {
	w := startQEMUWatch()
	if !w.present {
		return false
	}
	time.Sleep(2 * time.Second)
	busy, _ := w.busy()
	return busy
}

// loadAvg returns the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// ctxSwitches returns the context switches (voluntary and not) of each
// of pid's threads, keyed by thread ID: each is a sleep and a wakeup of
// that thread, which costs more than the work itself when it is short.
func ctxSwitches(pid int) map[string]uint64 {
	out := make(map[string]uint64)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return out
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := strings.CutPrefix(line, key); ok {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					out[t.Name()] += n
				}
			}
		}
	}
	return out
}

// ctxDelta returns the switches per second between two ctxSwitches
// samples: in all, and of the busiest thread.
func ctxDelta(a, b map[string]uint64, secs float64) (total, busiest float64) {
	for tid, n := range b {
		d := float64(n-a[tid]) / secs
		total += d
		busiest = max(busiest, d)
	}
	return total, busiest
}

// statWakeups is STAT_WAKEUPS in internal/tracer/bpf/tcpconnect.h: the
// index of the forced-wakeup counter in the tool's per-CPU stats map.
const statWakeups = 3

// forcedWakeups reads the tool's own count of the reader wakeups its BPF
// programs forced, from its "stats" map, found through the process's file
// descriptors (fdinfo names each BPF map's ID). tcpconnect does not print
// this counter; reading it here needs no change to the tool. It returns
// false when the map is not found (bpftrace, or a changed layout).
func forcedWakeups(pid int) (uint64, bool) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || l != "anon_inode:bpf-map" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		var id uint64
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			}
		}
		if id == 0 {
			continue
		}
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue
		}
		n, ok := readWakeups(m)
		m.Close()
		if ok {
			return n, true
		}
	}
	return 0, false
}

func readWakeups(m *ebpf.Map) (uint64, bool) {
	mi, err := m.Info()
	if err != nil || mi.Name != "stats" || mi.Type != ebpf.PerCPUArray || mi.MaxEntries <= statWakeups {
		return 0, false
	}
	var perCPU []uint64
	if err := m.Lookup(uint32(statWakeups), &perCPU); err != nil {
		return 0, false
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, true
}

// metricsURLRE finds where tcpconnect serves its metrics (it says so on
// stderr once it listens).
var metricsURLRE = regexp.MustCompile(`serving metrics on (http://\S+/metrics)`)

// scrapeConnects reads the tracer's /metrics and returns the sum of
// tcpconnect_connects_total: the attempts it counted (in the kernel, with
// --output none).
func (p *tracerProc) scrapeConnects() (uint64, error) {
	p.mu.Lock()
	var url string
	for _, l := range p.stderr {
		if m := metricsURLRE.FindStringSubmatch(l); m != nil {
			url = m[1]
		}
	}
	p.mu.Unlock()
	if url == "" {
		return 0, errors.New("the tracer did not say where it serves metrics")
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tcpconnect_connects_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("bad sample %q", line)
		}
		total += v
	}
	return uint64(total), sc.Err()
}
