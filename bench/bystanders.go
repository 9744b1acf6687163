// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpconnect/tcpconnect/bench/bystander"
)

// BystanderRun is one measurement of the bystanders (a process calling
// getppid(), one established connection doing request/response) while a
// tracer runs, or untraced.
type BystanderRun struct {
	Round     int     `json:"round"`
	Config    string  `json:"config"`
	GetppidNs float64 `json:"getppid_ns"`
	RRPerSec  float64 `json:"rr_per_s"`
	QEMU      bool    `json:"qemu_busy"`
	// Foreign lists syscall tracepoints that another process (not the
	// tracer measured) had attached during the run: they put every task
	// on the slow syscall path, untraced runs included, and hide the cost.
	Foreign []string `json:"foreign_syscall_tracepoints,omitempty"`
}

// foreignSyscallTracepoints lists the BPF programs on syscall tracepoints
// of processes other than exclude, as "PID COMM TRACEPOINT", from bpftool
// (which asks the kernel about every perf event of every process).
func foreignSyscallTracepoints(exclude int) ([]string, error) {
	out, err := exec.Command("bpftool", "-j", "perf", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool perf list: %w", err)
	}
	var evs []struct {
		PID        int    `json:"pid"`
		Type       string `json:"fd_type"`
		Tracepoint string `json:"tracepoint"`
	}
	if err := json.Unmarshal(out, &evs); err != nil {
		return nil, fmt.Errorf("bpftool perf list: %w", err)
	}
	var found []string
	for _, e := range evs {
		if e.PID == exclude || (e.Type != "tracepoint" && e.Type != "raw_tracepoint") {
			continue
		}
		if strings.HasPrefix(e.Tracepoint, "sys_enter") || strings.HasPrefix(e.Tracepoint, "sys_exit") {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID))
			found = append(found, fmt.Sprintf("%d %s %s", e.PID, strings.TrimSpace(string(comm)), e.Tracepoint))
		}
	}
	return found, nil
}

// BystanderRow summarizes one tracer over the rounds. Ratios are "what the
// bystander keeps": untraced getppid() time over traced, and traced round
// trips over untraced, each against the mean of the two untraced runs
// around the traced one; median over rounds.
type BystanderRow struct {
	Config          string `json:"config"`
	GetppidNs       num    `json:"getppid_ns"`
	GetppidRatio    num    `json:"getppid_ratio"`
	GetppidRatioRun []num  `json:"getppid_ratio_runs,omitempty"`
	RRPerSec        num    `json:"rr_per_s"`
	RRRatio         num    `json:"rr_ratio"`
	RRRatioRuns     []num  `json:"rr_ratio_runs,omitempty"`
}

// bystanderConfigs are the tracers measured for bystanders: every one of
// the run, plus -r, and the two opt-ins measured to say what they cost:
// -w (packet hooks: every packet of the host) and --sync-errors (every
// syscall, on sockops).
func (b *bench) bystanderConfigs() []tracerConfig {
	cs := append([]tracerConfig(nil), b.configs...)
	have := map[string]bool{}
	for _, c := range cs {
		have[c.Name] = true
	}
	for _, c := range extraBystanderConfigs {
		if !have[c.Name] {
			cs = append(cs, c)
		}
	}
	return cs
}

var extraBystanderConfigs = []tracerConfig{
	{Name: "results", Args: []string{"-r"}, parse: parseNothing},
	{Name: "why", Args: []string{"-w"}, parse: parseNothing},
	{Name: "sync-errors", Args: []string{"-r", "--sync-errors"}, parse: parseNothing},
}

// measureBystanders runs the interleaved rounds of bystander samples:
// U T1 … Tk U …, like the connect rows.
func (b *bench) measureBystanders(ctx context.Context) ([]BystanderRow, []BystanderRun, error) {
	// The connection is made before any tracer runs: the bystanders never
	// connect while measured.
	conn, err := bystander.Dial()
	if err != nil {
		return nil, nil, fmt.Errorf("bystander connection: %w", err)
	}
	defer conn.Close()
	configs := b.bystanderConfigs()
	d := b.o.bystanderDur
	var (
		runs     []BystanderRun
		untraced []BystanderRun
		traced   = map[string][]BystanderRun{}
	)
	sample := func(round int, name string, tracerPID int) (BystanderRun, error) {
		qw := startQEMUWatch()
		f0, err := foreignSyscallTracepoints(tracerPID)
		if err != nil {
			return BystanderRun{}, err
		}
		s, err := conn.Measure(d)
		if err != nil {
			return BystanderRun{}, err
		}
		f1, err := foreignSyscallTracepoints(tracerPID)
		if err != nil {
			return BystanderRun{}, err
		}
		r := BystanderRun{Round: round, Config: name, GetppidNs: s.GetppidNs, RRPerSec: s.RRPerSec}
		r.QEMU, _ = qw.busy()
		r.Foreign = append(f0, f1...)
		if len(r.Foreign) > 0 {
			b.logf("bystanders: another process hooks a syscall tracepoint (%s): this run's baseline is the slow path", strings.Join(r.Foreign, ", "))
		}
		runs = append(runs, r)
		return r, nil
	}
	for r := 0; r <= b.o.rounds; r++ {
		u, err := sample(r, "untraced", 0)
		if err != nil {
			return nil, nil, err
		}
		untraced = append(untraced, u)
		b.logf("bystanders round %d untraced: getppid %.1f ns, %.0f round trips/s", r, u.GetppidNs, u.RRPerSec)
		if r == b.o.rounds {
			break
		}
		for i := range configs {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			c := configs[(i+r)%len(configs)]
			t, err := b.bystanderTraced(r, c, sample)
			if err != nil {
				return nil, nil, err
			}
			traced[c.Name] = append(traced[c.Name], t)
			b.logf("bystanders round %d %s: getppid %.1f ns, %.0f round trips/s", r, c.Name, t.GetppidNs, t.RRPerSec)
		}
	}
	return summarizeBystanders(configs, untraced, traced), runs, nil
}

func (b *bench) bystanderTraced(round int, c tracerConfig, sample func(int, string, int) (BystanderRun, error)) (BystanderRun, error) {
	out, err := os.Create(filepath.Join(b.tmp, fmt.Sprintf("bystander-r%d-%s.out", round, c.Name)))
	if err != nil {
		return BystanderRun{}, fmt.Errorf("creating the tracer output file: %w", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	p, _, err := b.startAttached(c, out)
	if err != nil {
		return BystanderRun{}, err
	}
	// The tracer's reader starts right after it says it is attached.
	time.Sleep(100 * time.Millisecond)
	t, err := sample(round, c.Name, p.cmd.Process.Pid)
	st, serr := p.stop(20 * time.Second)
	if err != nil {
		return t, err
	}
	if serr != nil {
		return t, serr
	}
	if st.exitCode != 0 {
		return t, fmt.Errorf("%s exited with %d: %v", c.Name, st.exitCode, st.stderr)
	}
	return t, nil
}

func summarizeBystanders(configs []tracerConfig, untraced []BystanderRun, traced map[string][]BystanderRun) []BystanderRow {
	var ns, rr []float64
	for _, u := range untraced {
		ns = append(ns, u.GetppidNs)
		rr = append(rr, u.RRPerSec)
	}
	rows := []BystanderRow{{Config: "untraced", GetppidNs: num(median(ns)), GetppidRatio: 1, RRPerSec: num(median(rr)), RRRatio: 1}}
	for _, c := range configs {
		ts := traced[c.Name]
		if len(ts) == 0 {
			continue
		}
		var tns, trr, nsr, rrr []float64
		for _, t := range ts {
			u0, u1 := untraced[t.Round], untraced[t.Round+1]
			tns = append(tns, t.GetppidNs)
			trr = append(trr, t.RRPerSec)
			// Kept getppid() rate: untraced time over traced time.
			nsr = append(nsr, ratio((u0.GetppidNs+u1.GetppidNs)/2, t.GetppidNs))
			rrr = append(rrr, ratio(t.RRPerSec, (u0.RRPerSec+u1.RRPerSec)/2))
		}
		rows = append(rows, BystanderRow{
			Config:    c.Name,
			GetppidNs: num(median(tns)), GetppidRatio: num(median(nsr)), GetppidRatioRun: nums(nsr),
			RRPerSec: num(median(trr)), RRRatio: num(median(rrr)), RRRatioRuns: nums(rrr),
		})
	}
	return rows
}

// bystanderTargetConfigs are the rows the ≥ 0.99 target applies to: the
// tool's own modes, not the bpftrace reference nor the opt-ins -w and
// --sync-errors, whose cost is what they document.
var bystanderTargetConfigs = map[string]bool{"table": true, "json": true, "count": true, "metrics": true, "results": true}

func bystanderTarget(rows []BystanderRow) (TargetCheck, bool) {
	t := TargetCheck{Name: "bystanders", Target: "getppid() rate and round trips/s of an established connection, traced/untraced ≥ 0.99 (table, json, -c, metrics, -r)", Met: true}
	var bad []string
	n := 0
	for _, r := range rows {
		if !bystanderTargetConfigs[r.Config] {
			continue
		}
		n++
		if !(r.GetppidRatio >= 0.99) || !(r.RRRatio >= 0.99) {
			t.Met = false
			bad = append(bad, fmt.Sprintf("%s: getppid %.3f, rr %.3f", r.Config, float64(r.GetppidRatio), float64(r.RRRatio)))
		}
	}
	if n == 0 {
		return t, false
	}
	if t.Met {
		t.Got = fmt.Sprintf("all %d rows", n)
	} else {
		t.Got = fmt.Sprint(bad)
	}
	return t, true
}

func bystanderMarkdown(rows []BystanderRow) string {
	if len(rows) == 0 {
		return ""
	}
	s := "Bystanders: processes that never connect, while the tracer runs. getppid(): ns per call; round trips/s of one established loopback TCP connection doing 1-byte request/response; both timed in short batches (2000 calls, 200 round trips) and taken at the fastest 10 % of batches, which what else runs on the machine can only slow. Ratios are what the bystander keeps (untraced time / traced time; traced rate / untraced rate), median over rounds.\n\n" +
		"| tracer | getppid ns | getppid ratio | per round | round trips/s | rr ratio | per round |\n|---|---:|---:|---|---:|---:|---|\n"
	for _, r := range rows {
		s += fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |\n", r.Config, f1(r.GetppidNs), f3(r.GetppidRatio), joinNums(r.GetppidRatioRun), f0(r.RRPerSec), f3(r.RRRatio), joinNums(r.RRRatioRuns))
	}
	return s + "\n"
}

func joinNums(xs []num) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		if math.IsNaN(float64(x)) {
			s += "–"
		} else {
			s += fmt.Sprintf("%.3f", float64(x))
		}
	}
	return s
}
