// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// IdleResult is the delay from before connect() to the event's line on
// the tracer's stdout, for single connects on an otherwise idle tracer.
type IdleResult struct {
	Config   string    `json:"config"`
	Samples  []float64 `json:"samples_ms"`
	MedianMs num       `json:"median_ms"`
	MaxMs    num       `json:"max_ms"`
	TimedOut int       `json:"timed_out"`
	GapMs    float64   `json:"gap_ms"` // idle time before each connect
	// IdleCtxPerSec is the tracer's context switches per second while
	// nothing is traced: its idle wakeups.
	IdleCtxPerSec float64 `json:"idle_ctx_switches_per_s"`
}

type stampedLine struct {
	at time.Time
	k  portKey
}

// idleLatency starts the tracer with stdout on a pipe and, after a quiet
// gap each time, makes one connect and waits for its line.
func (b *bench) idleLatency(ctx context.Context, c tracerConfig) (IdleResult, error) {
	const gap = 200 * time.Millisecond
	res := IdleResult{Config: c.Name, GapMs: float64(gap.Milliseconds())}
	t, err := openTarget(unix.AF_INET, true)
	if err != nil {
		return res, err
	}
	defer unix.Close(t.fd)
	var wg sync.WaitGroup
	wg.Add(1)
	go acceptLoop(t.fd, &wg)
	defer func() {
		_ = unix.Shutdown(t.fd, unix.SHUT_RDWR)
		wg.Wait()
	}()

	r, w, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("creating a pipe: %w", err)
	}
	defer r.Close()
	p, err := startTracer(c, b.argv(c), w)
	w.Close() // the tracer holds the write end now
	if err != nil {
		return res, err
	}
	lines := make(chan stampedLine, 4096)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			// Stamped as soon as the line is read from the pipe.
			at := time.Now()
			k, ok := parseTableLine(sc.Text())
			if c.Name == "json" {
				k, ok = parseJSONLine(sc.Text())
			}
			if !ok {
				continue
			}
			select {
			case lines <- stampedLine{at, k}:
			default: // other traffic flooding: never block the tracer
			}
		}
	}()
	defer func() { _, _ = p.stop(10 * time.Second) }()
	if _, err := p.waitAttached(15 * time.Second); err != nil {
		return res, err
	}
	// Let the reader settle into its idle back-off, then count how often
	// its threads wake up while nothing happens.
	time.Sleep(time.Second)
	c0 := ctxSwitches(p.cmd.Process.Pid)
	time.Sleep(3 * time.Second)
	res.IdleCtxPerSec, _ = ctxDelta(c0, ctxSwitches(p.cmd.Process.Pid), 3)
	for range b.o.idleSamples {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		time.Sleep(gap)
		t0 := time.Now()
		sport, err := connectOnce(t)
		if err != nil {
			return res, err
		}
		want := portKey{sport, t.port}
		timeout := time.After(2 * time.Second)
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return res, fmt.Errorf("%s closed its stdout", c.Name)
				}
				if l.k == want {
					res.Samples = append(res.Samples, float64(l.at.Sub(t0).Microseconds())/1e3)
					break wait
				}
			case <-timeout:
				res.TimedOut++
				break wait
			}
		}
	}
	s := slices.Clone(res.Samples)
	res.MedianMs, res.MaxMs = num(median(s)), num(maxOf(s))
	b.logf("idle %s: median %.2f ms, max %.2f ms, %d timed out, %.0f ctx sw/s at idle", c.Name, float64(res.MedianMs), float64(res.MaxMs), res.TimedOut, res.IdleCtxPerSec)
	return res, nil
}
