// SPDX-License-Identifier: Apache-2.0

// Command vmbystander measures what tcpconnect costs processes that never
// connect (getppid() time, round trips of an established connection), on
// each backend, as ratios of traced over untraced runs interleaved like
// the benchmark's. It is small and static so that it runs inside the QEMU
// guests of tools/vmtest, where fentry and kprobe work; absolute times
// under TCG mean nothing, the ratios do.
//
//	vmbystander -tool /tcpconnect [-before /tcpconnect-before] [-backends fentry,kprobe] [-rounds 5] [-d 1s]
//
// Exit status 0 when every run worked (whatever the ratios), 1 otherwise.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tcpconnect/tcpconnect/bench/bystander"
)

type config struct {
	name string
	bin  string
	args []string
}

func main() {
	tool := flag.String("tool", "/tcpconnect", "tcpconnect binary")
	before := flag.String("before", "", "another tcpconnect binary, measured in table mode as config before")
	backends := flag.String("backends", "fentry,kprobe", "backends, comma separated")
	configs := flag.String("configs", "table,json,count,metrics,results", "tcpconnect modes: table, json, count, metrics, results (-r), sync-errors")
	rounds := flag.Int("rounds", 5, "interleaved rounds")
	d := flag.Duration("d", time.Second, "getppid() time per sample (round trips: twice as long)")
	flag.Parse()
	if err := run(*tool, *before, strings.Split(*backends, ","), strings.Split(*configs, ","), *rounds, *d); err != nil {
		fmt.Fprintf(os.Stderr, "vmbystander: %v\n", err)
		os.Exit(1)
	}
}

var modeArgs = map[string][]string{
	"table":       nil,
	"json":        {"--json"},
	"count":       {"-c"},
	"metrics":     {"-q", "--metrics-addr", "127.0.0.1:0"},
	"results":     {"-r"},
	"sync-errors": {"-r", "--sync-errors"},
}

func run(tool, before string, backends, modes []string, rounds int, d time.Duration) error {
	conn, err := bystander.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, b := range backends {
		var cs []config
		for _, m := range modes {
			a, ok := modeArgs[m]
			if !ok {
				return fmt.Errorf("unknown mode %q", m)
			}
			cs = append(cs, config{name: m, bin: tool, args: append([]string{"--backend", b}, a...)})
		}
		if before != "" {
			cs = append(cs, config{name: "before", bin: before, args: []string{"--backend", b}})
		}
		if err := measure(conn, b, cs, rounds, d); err != nil {
			return fmt.Errorf("backend %s: %w", b, err)
		}
	}
	return nil
}

func measure(conn *bystander.Conn, backend string, cs []config, rounds int, d time.Duration) error {
	var untraced []bystander.Sample
	type tr struct {
		round int
		s     bystander.Sample
	}
	traced := map[string][]tr{}
	for r := 0; r <= rounds; r++ {
		u, err := conn.Measure(d)
		if err != nil {
			return err
		}
		untraced = append(untraced, u)
		fmt.Printf("BYSTANDER-RUN backend=%s round=%d config=untraced getppid_ns=%.1f rr_per_s=%.0f\n", backend, r, u.GetppidNs, u.RRPerSec)
		if r == rounds {
			break
		}
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			s, err := tracedSample(conn, c, d)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			traced[c.name] = append(traced[c.name], tr{r, s})
			fmt.Printf("BYSTANDER-RUN backend=%s round=%d config=%s getppid_ns=%.1f rr_per_s=%.0f\n", backend, r, c.name, s.GetppidNs, s.RRPerSec)
		}
	}
	for _, c := range cs {
		var gr, rr []float64
		for _, t := range traced[c.name] {
			u0, u1 := untraced[t.round], untraced[t.round+1]
			gr = append(gr, (u0.GetppidNs+u1.GetppidNs)/2/t.s.GetppidNs)
			rr = append(rr, t.s.RRPerSec/((u0.RRPerSec+u1.RRPerSec)/2))
		}
		fmt.Printf("BYSTANDER backend=%s config=%s getppid_ratio=%.3f rr_ratio=%.3f getppid_runs=%s rr_runs=%s\n",
			backend, c.name, median(gr), median(rr), list(gr), list(rr))
	}
	return nil
}

// tracedSample starts c, waits until it says it is attached, samples, and
// stops it with SIGINT.
func tracedSample(conn *bystander.Conn, c config, d time.Duration) (bystander.Sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, c.args...)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return bystander.Sample{}, err
	}
	defer devnull.Close()
	cmd.Stdout = devnull
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return bystander.Sample{}, err
	}
	if err := cmd.Start(); err != nil {
		return bystander.Sample{}, err
	}
	attached := make(chan struct{})
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !once && strings.HasPrefix(sc.Text(), "Tracing tcp connections") {
				once = true
				close(attached)
			}
		}
	}()
	select {
	case <-attached:
	case <-done:
		_ = cmd.Wait()
		return bystander.Sample{}, fmt.Errorf("exited before attaching: %s", strings.Join(lines, " | "))
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return bystander.Sample{}, errors.New("not attached within a minute")
	}
	time.Sleep(100 * time.Millisecond)
	s, merr := conn.Measure(d)
	_ = cmd.Process.Signal(syscall.SIGINT)
	<-done
	werr := cmd.Wait()
	if merr != nil {
		return s, merr
	}
	if werr != nil {
		return s, fmt.Errorf("%v: %s", werr, strings.Join(lines, " | "))
	}
	return s, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func list(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(parts, ",")
}
