// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// num is a float that is null in JSON when it is NaN (not measured).
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

func (n *num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = num(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = num(f)
	return nil
}

func nums(xs []float64) []num {
	out := make([]num, len(xs))
	for i, x := range xs {
		out[i] = num(x)
	}
	return out
}

// Results is everything one benchmark run measured.
type Results struct {
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Params   Params       `json:"params"`
	Machine  Machine      `json:"machine"`
	Rows     []Row        `json:"rows"`
	Idle     []IdleResult `json:"idle"`
	// Bystanders: what the tracers cost processes that never connect.
	Bystanders    []BystanderRow `json:"bystanders,omitempty"`
	BystanderRuns []BystanderRun `json:"bystander_runs,omitempty"`
	Exec          []ExecResult   `json:"exec_load,omitempty"`
	Targets       []TargetCheck  `json:"targets"`
	GoBench       string         `json:"go_bench,omitempty"`
	Runs          []runRecord    `json:"runs"`
}

// Params are the options the run used.
type Params struct {
	RunSeconds  float64  `json:"run_seconds,omitempty"`
	RunAttempts int      `json:"run_attempts,omitempty"`
	Rounds      int      `json:"rounds"`
	Concs       []int    `json:"concurrency"`
	Modes       []string `json:"modes"`
	Configs     []string `json:"configs"`
	Quick       bool     `json:"quick"`
	// BystanderSeconds is the getppid() time per bystander sample.
	BystanderSeconds float64 `json:"bystander_seconds,omitempty"`
}

func paramsOf(o *options) Params {
	p := Params{Rounds: o.rounds, Concs: o.concs, Modes: o.modes, Configs: o.configs, Quick: o.quick, BystanderSeconds: o.bystanderDur.Seconds()}
	if o.count > 0 {
		p.RunAttempts = o.count
	} else {
		p.RunSeconds = o.dur.Seconds()
	}
	return p
}

// Machine says what the numbers were measured on, and whether anything
// else (QEMU) competed for the two cores.
type Machine struct {
	Kernel          string  `json:"kernel"`
	CPUs            int     `json:"cpus"`
	Go              string  `json:"go"`
	Commit          string  `json:"commit"`
	Bpftrace        string  `json:"bpftrace,omitempty"`
	BpftraceSkipped string  `json:"bpftrace_skipped,omitempty"`
	TracefsMounted  bool    `json:"tracefs_mounted_for_bpftrace,omitempty"`
	QEMUAtStart     bool    `json:"qemu_at_start"`
	QEMUAtEnd       bool    `json:"qemu_at_end"`
	RunsWithQEMU    int     `json:"runs_with_qemu"`
	BlocksRedone    int     `json:"blocks_redone_after_qemu"`
	WaitedForIdle   string  `json:"waited_for_idle,omitempty"`
	LoadAvgAtStart  float64 `json:"loadavg_1m_at_start"`
	// BystanderRunsHooked counts bystander runs during which another
	// process had a syscall tracepoint hooked (see BystanderRun.Foreign).
	BystanderRunsHooked int `json:"bystander_runs_with_foreign_syscall_tracepoints"`
	// AttachRetries counts tracer starts that failed and were tried again.
	AttachRetries int `json:"attach_retries"`
}

// Idle reports whether nothing else heavy ran during the measurements.
func (m Machine) Idle() bool { return !m.QEMUAtStart && !m.QEMUAtEnd && m.RunsWithQEMU == 0 }

// TargetCheck is one target of issue 5, measured.
type TargetCheck struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Got    string `json:"got"`
	Met    bool   `json:"met"`
}

// toolConfigs are the rows the targets apply to (not the bpftrace
// reference, nor -variant binaries).
var toolConfigs = map[string]bool{"table": true, "json": true, "count": true}

// evaluate checks the targets against the summary rows.
func evaluate(res *Results) []TargetCheck {
	var out []TargetCheck
	add := func(name, target string, met bool, got []string) {
		out = append(out, TargetCheck{Name: name, Target: target, Got: strings.Join(got, "; "), Met: met})
	}
	byKey := map[string]Row{}
	for _, r := range res.Rows {
		byKey[fmt.Sprintf("%s/%d/%s", r.Mode, r.Conc, r.Config)] = r
	}
	var tool []Row
	for _, r := range res.Rows {
		if toolConfigs[r.Config] {
			tool = append(tool, r)
		}
	}
	label := func(r Row) string { return fmt.Sprintf("%s c=%d %s", r.Mode, r.Conc, r.Config) }

	check := func(name, target string, bad func(Row) (string, bool), rows []Row) {
		if len(rows) == 0 {
			return // not measured in this run
		}
		met := true
		var got []string
		for _, r := range rows {
			if s, isBad := bad(r); isBad {
				met = false
				got = append(got, label(r)+": "+s)
			}
		}
		if met {
			got = []string{"all " + fmt.Sprint(len(rows)) + " rows"}
		}
		add(name, target, met, got)
	}
	check("throughput", "traced/untraced ≥ 0.92 in every mode at 1, 4, 16 connectors", func(r Row) (string, bool) {
		return fmt.Sprintf("%.2f", float64(r.Ratio)), !(r.Ratio >= 0.92)
	}, tool)
	var pairs []Row
	for _, r := range tool {
		if r.Config != "count" {
			pairs = append(pairs, r)
		}
	}
	check("table/json vs -c", "throughput ratio within 0.03 of -c's", func(r Row) (string, bool) {
		c, ok := byKey[fmt.Sprintf("%s/%d/count", r.Mode, r.Conc)]
		if !ok {
			return "no -c row", true
		}
		d := float64(r.Ratio - c.Ratio)
		return fmt.Sprintf("%+.2f", d), !(math.Abs(d) <= 0.03)
	}, pairs)
	check("p99 latency", "traced/untraced p99 connect latency ≤ 1.2", func(r Row) (string, bool) {
		return fmt.Sprintf("%.2f", float64(r.P99Ratio)), !(r.P99Ratio <= 1.2)
	}, tool)
	var tables, jsons []Row
	for _, r := range tool {
		switch r.Config {
		case "table":
			tables = append(tables, r)
		case "json":
			jsons = append(jsons, r)
		}
	}
	check("CPU (table)", "≤ 0.15 CPU s per 100k events", func(r Row) (string, bool) {
		return fmt.Sprintf("%.3f", float64(r.CPUPer100k)), !(r.CPUPer100k <= 0.15)
	}, tables)
	check("CPU (json)", "≤ 0.25 CPU s per 100k events", func(r Row) (string, bool) {
		return fmt.Sprintf("%.3f", float64(r.CPUPer100k)), !(r.CPUPer100k <= 0.25)
	}, jsons)
	if len(res.Idle) > 0 {
		met := true
		var got []string
		for _, i := range res.Idle {
			got = append(got, fmt.Sprintf("%s median %.2f ms (max %.2f, %d timed out)", i.Config, float64(i.MedianMs), float64(i.MaxMs), i.TimedOut))
			if !(i.MedianMs <= 10) || i.TimedOut > 0 {
				met = false
			}
		}
		add("idle latency", "a single connect on stdout within 10 ms (median of 20)", met, got)
	}
	check("wakeups", "≤ 200 reader wakeups/s under load (IWI interrupts)", func(r Row) (string, bool) {
		return fmt.Sprintf("%.0f/s", float64(r.IWIPerSec)), !(r.IWIPerSec <= 200)
	}, tool)
	check("loss", "zero loss with the default buffer, or lost = missing", func(r Row) (string, bool) {
		s := fmt.Sprintf("%d/%d matched, %d missing, %d lost, %d extra", r.Match.Matched, r.Match.Attempts, r.Match.Missing, r.Lost, r.Match.Extra)
		exact := r.Match.Missing == 0 && r.Lost == 0 && r.Match.Extra == 0
		accounted := uint64(r.Match.Missing) == r.Lost && r.Match.Extra == 0
		return s, !(exact || accounted) || r.CaptureDrops > 0
	}, tool)
	check("garbled lines", "none", func(r Row) (string, bool) {
		return fmt.Sprint(r.Garbled), r.Garbled != 0
	}, tool)
	check("attach time", "attached within 300 ms (worst run)", func(r Row) (string, bool) {
		return fmt.Sprintf("%.0f ms", float64(r.AttachMaxMs)), !(r.AttachMaxMs <= 300)
	}, tool)
	if t, ok := bystanderTarget(res.Bystanders); ok {
		if n := res.Machine.BystanderRunsHooked; n > 0 {
			t.Met = false
			t.Got = fmt.Sprintf("not measurable: another process hooked a syscall tracepoint during %d runs; %s", n, t.Got)
		}
		out = append(out, t)
	}
	check("peak RSS", "≤ 40 MiB", func(r Row) (string, bool) {
		return fmt.Sprintf("%.1f MiB", float64(r.MaxRSSMiB)), !(r.MaxRSSMiB <= 40)
	}, tool)
	return out
}

// write puts the results in the output directory (and, with -publish,
// into bench/).
func (b *bench) write(res *Results) error {
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the results: %w", err)
	}
	md := markdown(res)
	stamp := res.Started.Format("20060102-150405")
	files := map[string][]byte{
		"results.json":               append(js, '\n'),
		"results.md":                 []byte(md),
		"results-" + stamp + ".json": append(js, '\n'),
		"results-" + stamp + ".md":   []byte(md),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(b.o.outDir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	png := filepath.Join(b.o.outDir, "throughput.png")
	if err := plotThroughput(res, png); err != nil {
		return err
	}
	fmt.Print(md)
	if !b.o.publish {
		b.logf("results in %s", b.o.outDir)
		return nil
	}
	dir := filepath.Join(b.root, "bench")
	for _, name := range []string{"results.json", "results.md"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return fmt.Errorf("publishing %s: %w", name, err)
		}
	}
	if err := plotThroughput(res, filepath.Join(dir, "throughput.png")); err != nil {
		return err
	}
	b.logf("results in %s, published to %s", b.o.outDir, dir)
	return nil
}

func f2(v num) string {
	if math.IsNaN(float64(v)) {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(v))
}

func f3(v num) string {
	if math.IsNaN(float64(v)) {
		return "–"
	}
	return fmt.Sprintf("%.3f", float64(v))
}

func f1(v num) string {
	if math.IsNaN(float64(v)) {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(v))
}

func f0(v num) string {
	if math.IsNaN(float64(v)) {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(v))
}

// markdown renders the results for results.md and the README.
func markdown(res *Results) string {
	var s strings.Builder
	m := res.Machine
	fmt.Fprintf(&s, "Measured %s on Linux %s, %d CPUs, %s, tcpconnect %s", res.Started.Format("2006-01-02 15:04 MST"), m.Kernel, m.CPUs, m.Go, m.Commit)
	if m.Bpftrace != "" && m.BpftraceSkipped == "" {
		fmt.Fprintf(&s, ", %s", m.Bpftrace)
	}
	fmt.Fprintf(&s, ". ")
	if m.Idle() {
		fmt.Fprintf(&s, "The machine was otherwise idle (no QEMU at the start, at the end or at any run; 1-min load average %.2f at the start", m.LoadAvgAtStart)
		if m.WaitedForIdle != "" {
			fmt.Fprintf(&s, ", after waiting %s for QEMU to finish", m.WaitedForIdle)
		}
		fmt.Fprintf(&s, ").\n")
	} else {
		fmt.Fprintf(&s, "**The machine was not idle**: QEMU ran at the start: %v, at the end: %v, during %d runs.\n", m.QEMUAtStart, m.QEMUAtEnd, m.RunsWithQEMU)
	}
	p := res.Params
	load := fmt.Sprintf("%.1f s", p.RunSeconds)
	if p.RunAttempts > 0 {
		load = fmt.Sprintf("%d attempts", p.RunAttempts)
	}
	fmt.Fprintf(&s, "Each run: %s of loopback connects, IPv4 and IPv6 alternating; %d interleaved rounds (untraced, then each tracer in rotating order, then untraced again); ratios are each traced run over the mean of the untraced runs around it, median over rounds.", load, p.Rounds)
	if p.Quick {
		fmt.Fprintf(&s, " **Quick (smoke) run: not a measurement.**")
	}
	if m.BpftraceSkipped != "" {
		fmt.Fprintf(&s, " bpftrace reference skipped: %s.", m.BpftraceSkipped)
	}
	s.WriteString("\n\n")
	for _, mode := range p.Modes {
		fmt.Fprintf(&s, "**%s**\n\n", mode)
		s.WriteString("| conc | tracer | connects/s | ratio | ratio per round | p99 µs | p99× | reported/attempts | lost | garbled | CPU s/100k ev | peak RSS MiB | attach ms | IWI/s | forced wakeups/s | tracer ctx sw/s |\n")
		s.WriteString("|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range res.Rows {
			if r.Mode != mode {
				continue
			}
			runs := make([]string, len(r.RatioRuns))
			for i, v := range r.RatioRuns {
				runs[i] = f2(v)
			}
			rep, lost, garbled := "–", "–", "–"
			if r.Config != "untraced" {
				rep = fmt.Sprintf("%d/%d", r.Match.Matched, r.Match.Attempts)
				if r.Match.Extra > 0 {
					rep += fmt.Sprintf(" (+%d extra)", r.Match.Extra)
				}
				garbled = fmt.Sprint(r.Garbled)
				lost = fmt.Sprint(r.Lost)
			}
			fmt.Fprintf(&s, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				r.Conc, r.Config, f0(r.Rate), f2(r.Ratio), strings.Join(runs, " "), f0(r.P99us), f2(r.P99Ratio),
				rep, lost, garbled, f3(r.CPUPer100k), f1(r.MaxRSSMiB), f0(r.AttachMs), f0(r.IWIPerSec), f0(r.ForcedPerSec), f0(r.CtxPerSec))
		}
		s.WriteString("\n")
	}
	if m.BystanderRunsHooked > 0 {
		fmt.Fprintf(&s, "**During %d bystander runs another process had a syscall tracepoint hooked** (see `foreign_syscall_tracepoints` in the JSON): every task was on the slow syscall path, untraced runs too, so the bystander ratios below hide what a syscall tracepoint costs.\n\n", m.BystanderRunsHooked)
	}
	s.WriteString(bystanderMarkdown(res.Bystanders))
	if len(res.Idle) > 0 {
		s.WriteString("Idle latency (one connect after a quiet gap, from before connect() to its line on the tracer's stdout pipe):\n\n")
		s.WriteString("| tracer | samples | median ms | max ms | timed out | tracer ctx sw/s at idle |\n|---|---:|---:|---:|---:|---:|\n")
		for _, i := range res.Idle {
			fmt.Fprintf(&s, "| %s | %d | %s | %s | %d | %.0f |\n", i.Config, len(i.Samples), f2(i.MedianMs), f2(i.MaxMs), i.TimedOut, i.IdleCtxPerSec)
		}
		s.WriteString("\n")
	}
	s.WriteString(execMarkdown(res.Exec))
	if len(res.Targets) > 0 {
		s.WriteString("| target | wanted | met | measured |\n|---|---|---|---|\n")
		for _, t := range res.Targets {
			met := "yes"
			if !t.Met {
				met = "**no**"
			}
			fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", t.Name, t.Target, met, t.Got)
		}
		s.WriteString("\n")
	}
	if res.GoBench != "" {
		s.WriteString("User-space hot path (`go test -run '^$' -bench . -benchmem -count 5 ./internal/output ./internal/tracer`):\n\n```\n")
		s.WriteString(res.GoBench)
		s.WriteString("```\n")
	}
	return s.String()
}

// runGoBench runs the existing Go benchmarks of the user-space hot path;
// the text is benchstat's input format.
func runGoBench(root string) (string, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "5", "./internal/output", "./internal/tracer")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go test -bench: %w: %s", err, out)
	}
	return string(out), nil
}
