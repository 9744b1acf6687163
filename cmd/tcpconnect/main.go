// SPDX-License-Identifier: Apache-2.0

// Command tcpconnect traces active TCP connections (every connect()
// attempt) with eBPF, like bcc's tcpconnect(8), and can tell how each
// attempt ended. It turns the flags into a tracer.Config and output
// options, and wires the tracer to a printer and, with --metrics-addr, to
// the metrics server; the work is done in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/cgroups"
	"github.com/tcpconnect/tcpconnect/internal/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/output"
	"github.com/tcpconnect/tcpconnect/internal/tracer"
	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain returns the exit code: 0 done, 1 runtime error, 2 usage error.
func realMain(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	var usage errUsage
	if errors.As(err, &usage) {
		// One line: the error is not buried under the help text.
		fmt.Fprintf(stderr, "tcpconnect: %v (see tcpconnect --help)\n", err)
		return 2
	}
	// A closed stdout must end the run cleanly, not kill it.
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP (the terminal went away, or a supervisor's reload) ends the
	// run like SIGTERM: detached, with the exit line.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, opts, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "tcpconnect: %v\n", err)
		return 1
	}
	return 0
}

// errStdoutClosed ends a run whose reader went away (`| head -3`).
var errStdoutClosed = errors.New("stdout closed")

// sink hands events to the printer and counts them.
type sink struct {
	p output.Printer
	n uint64
}

func (s *sink) Event(e *event.Event) error {
	s.n++
	return stdoutErr(s.p.Event(e))
}

func (s *sink) Flush() error { return stdoutErr(s.p.Flush()) }

func stdoutErr(err error) error {
	if errors.Is(err, syscall.EPIPE) {
		return errStdoutClosed
	}
	return err
}

func run(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if err := tracer.CheckPrivileges(); err != nil {
		return err
	}
	cfg := o.tracer
	res, err := cgroupFilters(o, &cfg)
	if err != nil {
		return err
	}
	names := dnsNames(o, &cfg)
	if o.verbose {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "tcpconnect: "+format+"\n", args...)
		}
	}
	t, err := tracer.Open(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	if o.verbose {
		progs, links := t.Attached()
		cfg.Logf("program IDs %v, link IDs %v", progs, links)
	}

	ctx, cancel := context.WithCancel(ctx)
	// Deferred after t.Close, so it runs first: the goroutines that read
	// the tracer's maps are gone before the maps close.
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	go watchStdout(ctx, cancel, stdout)
	bg.Go(func() { warnLost(ctx, t, stderr) })
	if o.containerPrefix != "" {
		bg.Go(func() { followContainers(ctx, t, res, o.containerPrefix, stderr) })
	}

	if o.count {
		fmt.Fprintln(stderr, "Tracing tcp connections, counting them. Hit Ctrl-C to end.")
		<-ctx.Done()
		counts, err := t.Counts()
		if err != nil {
			return err
		}
		err = output.WriteCounts(stdout, counts, o.json, cfg.Family == event.FamilyIPv4)
		return finish(t, names, stderr, 0, o.verbose, stdoutErr(err))
	}

	popts := output.Options{
		Timestamp: o.stamp,
		StartMono: t.StartMono(),
		PrintUID:  o.uidCol,
		Results:   o.results,
		Why:       o.why,
		IPv4Only:  cfg.Family == event.FamilyIPv4,
		Backend:   string(t.Backend()),
		Container: o.container,
		Extended:  o.extended,
		Who:       o.wide,
		Users:     newUserNames(),
	}
	if res != nil {
		popts.Cgroups = res
	}
	if names != nil {
		popts.Names = names
	}
	var p output.Printer = noOutput{}
	if o.json {
		p = output.NewJSON(stdout, popts)
	} else if o.daemon.output != outputNone {
		p = output.NewTable(stdout, popts)
	}
	p, stopMetrics, err := serveMetrics(ctx, o, t, p, stderr)
	if err != nil {
		return err
	}
	// Deferred after t.Close, so it runs first: no scrape reads a closed
	// tracer.
	defer stopMetrics()
	if err := t.WhyUnavailable(); err != nil {
		fmt.Fprintf(stderr, "tcpconnect: warning: no NAT destination, retransmissions, drop reasons or ICMP errors: %v\n", err)
	}
	fmt.Fprintln(stderr, "Tracing tcp connections. Hit Ctrl-C to end.")
	s := &sink{p: p}
	err = stdoutErr(p.Header())
	if err == nil {
		err = t.Run(ctx, s)
	}
	if err == nil && o.results {
		// Attempts still waiting for an answer are reported, not lost.
		err = printPending(t, s)
	}
	return finish(t, names, stderr, s.n, o.verbose, err)
}

// cgroupFilters turns --cgroup and --container into cgroup ids for the
// kernel's filter, and returns what names cgroup ids for the output (nil
// without a cgroup v2 mount).
func cgroupFilters(o *options, cfg *tracer.Config) (*cgroups.Resolver, error) {
	root := tracer.CgroupV2Mount()
	if root == "" {
		if o.cgroupPath != "" || o.containerPrefix != "" {
			return nil, errors.New("--cgroup and --container need a cgroup v2 hierarchy, and none is mounted")
		}
		return nil, nil
	}
	res := cgroups.NewResolver(root)
	if o.cgroupPath != "" {
		dir, err := cgroups.Resolve(root, o.cgroupPath)
		if err != nil {
			return nil, err
		}
		id, err := cgroups.ID(dir)
		if err != nil {
			return nil, err
		}
		cfg.CgroupFilter, cfg.Cgroups = true, append(cfg.Cgroups, id)
	}
	if o.containerPrefix != "" {
		cfg.CgroupFilter = true
		cfg.Cgroups = append(cfg.Cgroups, res.Containers(o.containerPrefix)...)
	}
	return res, nil
}

// dnsNames sets up -d: the cache that the tracer's DNS answers fill.
func dnsNames(o *options, cfg *tracer.Config) *dns.Cache {
	if !o.dns {
		return nil
	}
	names := dns.NewCache(o.dnsCacheSize)
	cfg.DNS = func(m *event.DNSMessage) {
		// Malformed, partial and unsolicited messages are skipped: they
		// name nothing.
		_ = names.Observe(m)
	}
	return names
}

func printPending(t *tracer.Tracer, s *sink) error {
	pending, err := t.Pending()
	if err != nil {
		return err
	}
	for i := range pending {
		if err := s.Event(&pending[i]); err != nil {
			return err
		}
	}
	return s.Flush()
}

// finish prints the loss summary and decides the run's error: a closed
// stdout is a normal end.
func finish(t *tracer.Tracer, names *dns.Cache, stderr io.Writer, printed uint64, verbose bool, err error) error {
	if errors.Is(err, errStdoutClosed) {
		err = nil
	}
	st, serr := t.Stats()
	if serr != nil {
		return errors.Join(err, serr)
	}
	fmt.Fprintf(stderr, "tcpconnect: %d events printed, %d lost", printed, st.LostEvents)
	if st.LostDNS > 0 {
		fmt.Fprintf(stderr, ", %d DNS messages lost (names may be missing)", st.LostDNS)
	}
	if st.LostAttempts > 0 {
		fmt.Fprintf(stderr, ", %d attempts not followed (--max-pending)", st.LostAttempts)
	}
	if st.LostCounts > 0 {
		fmt.Fprintf(stderr, ", %d attempts not counted (count table full)", st.LostCounts)
	}
	if st.LostProcs > 0 {
		fmt.Fprintf(stderr, ", %d processes not followed (process table or ring buffer full)", st.LostProcs)
	}
	if verbose {
		fmt.Fprintf(stderr, ", %d reader wakeups forced", st.Wakeups)
		if names != nil {
			seen, answered, dropped := names.Counts()
			fmt.Fprintf(stderr, ", %d DNS messages read (%d answers believed, %d answering no query)", seen, answered, dropped)
		}
	}
	fmt.Fprintln(stderr)
	return err
}

// warnLost polls the kernel's loss counters and warns while running.
func warnLost(ctx context.Context, t *tracer.Tracer, stderr io.Writer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var seen event.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := t.Stats()
		if err != nil {
			continue
		}
		if d := st.LostEvents - seen.LostEvents; d > 0 {
			fmt.Fprintf(stderr, "tcpconnect: warning: %d events lost (ring buffer full; try a larger --buffer-size)\n", d)
		}
		if d := st.LostAttempts - seen.LostAttempts; d > 0 {
			fmt.Fprintf(stderr, "tcpconnect: warning: %d attempts not followed (too many pending; try a larger --max-pending)\n", d)
		}
		if d := st.LostCounts - seen.LostCounts; d > 0 {
			fmt.Fprintf(stderr, "tcpconnect: warning: %d attempts not counted (count table full)\n", d)
		}
		if d := st.LostProcs - seen.LostProcs; d > 0 {
			fmt.Fprintf(stderr, "tcpconnect: warning: %d processes not followed (process table or ring buffer full): their attempts show no exe\n", d)
		}
		if d := st.LostDNS - seen.LostDNS; d > 0 {
			fmt.Fprintf(stderr, "tcpconnect: warning: %d DNS messages lost (ring buffer full; names may be missing; try a larger --buffer-size)\n", d)
		}
		seen = st
	}
}

// followContainers adds the cgroups of containers that start after us to
// the --container filter.
func followContainers(ctx context.Context, t *tracer.Tracer, res *cgroups.Resolver, prefix string, stderr io.Writer) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := t.AddCgroups(res.Containers(prefix)); err != nil {
			fmt.Fprintf(stderr, "tcpconnect: warning: %v\n", err)
		}
	}
}

// watchStdout ends the run when stdout is a pipe whose reader has gone,
// even if no event comes to fail a write.
func watchStdout(ctx context.Context, cancel context.CancelFunc, stdout io.Writer) {
	f, ok := stdout.(*os.File)
	if !ok {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	fds := []unix.PollFd{{Fd: int32(f.Fd())}}
	for ctx.Err() == nil {
		// POLLERR is reported on a pipe's write end once the read end is
		// closed; the timeout lets this goroutine end with the run.
		n, err := unix.Poll(fds, 200)
		if err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			cancel()
			return
		}
	}
}
