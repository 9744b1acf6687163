// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ExecResult is what following processes costs a host that execs a lot:
// a shell loop running /bin/true N times, timed untraced and under each
// tracer, interleaved; Ratio is the median traced time over the median
// untraced time (1.05: 5 % slower).
type ExecResult struct {
	Config   string    `json:"config"`
	Execs    int       `json:"execs"`
	Seconds  []float64 `json:"seconds"`
	MedianS  num       `json:"median_s"`
	Ratio    num       `json:"ratio_to_untraced"`
	QEMURuns int       `json:"runs_with_qemu"`
	// BPFNsPerExec is the run time of the tracer's exec, fork and exit
	// programs per loop iteration (kernel BPF stats, median over runs):
	// the hooks' cost, free of the noise that the wall time carries.
	BPFNsPerExec num `json:"bpf_ns_per_exec"`
	// BPFShare is BPFNsPerExec over the untraced iteration's wall time.
	BPFShare  num    `json:"bpf_share"`
	LostProcs string `json:"tracer_summary,omitempty"`
}

// execConfigs are the tracers of the exec load: the plain table (which
// does not follow processes), JSON and -W (which do).
var execConfigs = []tracerConfig{
	{Name: "table", parse: parseNothing},
	{Name: "json", Args: []string{"--json"}, parse: parseNothing},
	{Name: "wide", Args: []string{"-W"}, parse: parseNothing},
}

// execLoad runs the loop untraced and under each tracer, o.rounds times
// in turn, with the tracers' output thrown away (the loop makes no
// connects: what is measured is the exec, fork and exit hooks).
func (b *bench) execLoad(ctx context.Context) ([]ExecResult, error) {
	n := b.o.execN
	script := "i=0; while [ $i -lt " + strconv.Itoa(n) + " ]; do /bin/true; i=$((i+1)); done"
	times := map[string][]float64{}
	bpfNs := map[string][]float64{}
	qemu := map[string]int{}
	summary := map[string]string{}
	run := func(name string) error {
		_, q0 := qemuCPU()
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("exec load: %v (%s)", err, out)
		}
		times[name] = append(times[name], time.Since(t0).Seconds())
		if _, q1 := qemuCPU(); (q1 - q0).Seconds() > 0.02*time.Since(t0).Seconds() {
			qemu[name]++
		}
		return nil
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	for round := range b.o.rounds {
		if err := run("untraced"); err != nil {
			return nil, err
		}
		for _, c := range execConfigs {
			p, err := startTracer(c, b.argv(c), devnull)
			if err != nil {
				return nil, err
			}
			if _, err := p.waitAttached(15 * time.Second); err != nil {
				_, _ = p.stop(10 * time.Second)
				return nil, err
			}
			stats, serr := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if serr != nil {
				b.logf("exec load: no BPF run-time stats: %v", serr)
			}
			err = run(c.Name)
			if stats != nil {
				if ns, ok := procHookNs(); ok {
					bpfNs[c.Name] = append(bpfNs[c.Name], float64(ns)/float64(n))
				}
				stats.Close()
			}
			if _, serr := p.stop(10 * time.Second); err == nil && serr != nil {
				err = serr
			}
			if err != nil {
				return nil, err
			}
			summary[c.Name] = lastSummary(p)
		}
		if err := run("untraced"); err != nil {
			return nil, err
		}
		b.logf("exec load round %d of %d done", round+1, b.o.rounds)
	}
	base := median(slices.Clone(times["untraced"]))
	var res []ExecResult
	for _, name := range []string{"untraced", "table", "json", "wide"} {
		s := times[name]
		m := median(slices.Clone(s))
		r := ExecResult{Config: name, Execs: n, Seconds: s, MedianS: num(m), Ratio: num(m / base), QEMURuns: qemu[name], LostProcs: summary[name]}
		if ns := bpfNs[name]; len(ns) > 0 {
			r.BPFNsPerExec = num(median(slices.Clone(ns)))
			r.BPFShare = num(float64(r.BPFNsPerExec) / (base * 1e9 / float64(n)))
		}
		b.logf("exec load %s: median %.3f s for %d execs, ratio %.3f, BPF %.0f ns per exec (%.2f %% of an untraced iteration)",
			name, m, n, m/base, float64(r.BPFNsPerExec), 100*float64(r.BPFShare))
		res = append(res, r)
	}
	return res, nil
}

// procHookNs sums the run time of the programs that follow processes
// (tcpconnect_exec, _fork, _exit) over every loaded copy: only the tracer
// under test loads them while the loop runs.
func procHookNs() (uint64, bool) {
	var total uint64
	found := false
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		if err == nil {
			switch info.Name {
			case "tcpconnect_exec", "tcpconnect_fork", "tcpconnect_exit":
				if st, err := p.Stats(); err == nil {
					total += uint64(st.Runtime)
					found = true
				}
			}
		}
		p.Close()
	}
	return total, found
}

// lastSummary is the tracer's exit line ("N events printed, M lost…").
func lastSummary(p *tracerProc) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.stderr) - 1; i >= 0; i-- {
		if strings.Contains(p.stderr[i], "events printed") {
			return p.stderr[i]
		}
	}
	return ""
}

// execMarkdown is the exec-load section of results.md.
func execMarkdown(rs []ExecResult) string {
	if len(rs) == 0 {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "Exec load (a shell loop running /bin/true %d times; median of %d runs; target: at most 1.05 of untraced for the configurations that follow processes, json and wide):\n\n", rs[0].Execs, len(rs[0].Seconds))
	s.WriteString("| config | median s | ratio | BPF ns per exec | BPF share of an iteration | runs with QEMU |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&s, "| %s | %s | %s | %.0f | %.2f %% | %d |\n", r.Config, f2(r.MedianS), f2(r.Ratio), float64(r.BPFNsPerExec), 100*float64(r.BPFShare), r.QEMURuns)
	}
	s.WriteString("\n")
	return s.String()
}
