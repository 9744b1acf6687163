// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcpconnect/tcpconnect/internal/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/tracer"
	"golang.org/x/sys/unix"
)

// options is the parsed command line.
type options struct {
	tracer  tracer.Config
	json    bool
	count   bool
	stamp   bool // -t
	uidCol  bool // -U
	results bool // -r
	verbose bool
	// container shows the CONTAINER column; containerPrefix (from
	// --container=PREFIX) also filters on it. extended is -x.
	container       bool
	containerPrefix string
	extended        bool
	wide            bool   // -W
	cgroupPath      string // --cgroup, resolved in run
	dns             bool   // -d
	dnsCacheSize    int
	daemon          daemonOptions // --output, -q, --metrics-*: metrics.go
}

// errUsage marks errors that are the user's input: exit code 2. usage is
// the help text to print after the error line.
type errUsage struct {
	err   error
	usage string
}

func (e errUsage) Error() string { return e.err.Error() }
func (e errUsage) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return errUsage{err: fmt.Errorf(format, args...)}
}

// errHelp means -h was asked for: usage on stdout, exit 0.
var errHelp = errors.New("help requested")

const usageHead = `Usage: tcpconnect [OPTIONS]

Trace active TCP connections (connect() attempts), like bcc's tcpconnect(8).

Examples:
  tcpconnect             # trace all TCP connect()s
  tcpconnect -t          # include a timestamp column
  tcpconnect -p 181      # only trace PID 181
  tcpconnect -P 80,81    # only trace ports 80 and 81
  tcpconnect -U -u 1000  # show UIDs, only trace UID 1000
  tcpconnect -c          # count connects per source, destination and port
  tcpconnect -r          # show how each attempt ended and how long it took
  tcpconnect -W          # who: user, parent, executable and its arguments
  tcpconnect --exe /usr/bin/curl  # only connects of processes running curl
  tcpconnect --json      # one JSON object per line
  tcpconnect -q --metrics-addr :9464  # no output; Prometheus metrics at :9464/metrics

Options:
`

// parseFlags turns args (without the program name) into options. Usage
// errors come back as errUsage, carrying the usage text; -h writes it to
// helpOut.
func parseFlags(args []string, helpOut io.Writer) (*options, error) {
	fs := pflag.NewFlagSet("tcpconnect", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	var (
		o          options
		pid        string
		ports      string
		uid        string
		ipv4, ipv6 bool
		lport      bool
		backend    string
		bufSize    string
		maxPending int
		failed     bool
		minLatency float64
		help       bool
		netns      string
	)
	fs.BoolVarP(&o.stamp, "timestamp", "t", false, "include a TIME(s) column: seconds since tracing started")
	fs.StringVarP(&pid, "pid", "p", "", "trace this PID only")
	fs.StringVarP(&ports, "port", "P", "", "comma-separated list of destination ports to trace")
	fs.BoolVarP(&ipv4, "ipv4", "4", false, "trace IPv4 family only")
	fs.BoolVarP(&ipv6, "ipv6", "6", false, "trace IPv6 family only")
	fs.BoolVarP(&o.uidCol, "print-uid", "U", false, "include a UID column")
	fs.StringVarP(&uid, "uid", "u", "", "trace this UID only")
	fs.BoolVarP(&o.count, "count", "c", false, "count connects per source address, destination address and port; print at Ctrl-C")
	fs.BoolVarP(&lport, "lport", "L", false, "accepted for bcc compatibility: SPORT is always shown")
	fs.BoolVarP(&o.results, "result", "r", false, "print each attempt when it ends, with LAT(ms) and RESULT columns")
	fs.BoolVar(&failed, "failed", false, "only failed attempts (implies -r)")
	fs.Float64Var(&minLatency, "min-latency", 0, "only attempts whose handshake took at least `MS` milliseconds (implies -r)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per line (schema: docs/json.md)")
	addDaemonFlags(fs, &o.daemon)
	fs.StringVar(&o.containerPrefix, "container", "", "add a CONTAINER column; --container=`ID-PREFIX` also keeps only containers whose id starts so")
	fs.Lookup("container").NoOptDefVal = containerColumnOnly
	fs.BoolVarP(&o.extended, "extended", "x", false, "add PPID and CGROUP columns")
	fs.BoolVarP(&o.wide, "wide", "W", false, "add USER and PCOMM (the parent's name) after COMM, and EXE and ARGS (the program and its command line, captured at exec) at the end")
	fs.StringVar(&o.tracer.Exe, "exe", "", "only processes running this executable: its full `PATH` as the process's mount namespace sees it")
	fs.StringVar(&o.tracer.Comm, "comm", "", "only threads with this exact `NAME` (as Inspektor Gadget's --comm; any process can rename its threads)")
	fs.BoolVarP(&o.dns, "dns", "d", false, "add a DNAME column: the host name the process resolved to DADDR (from DNS answers seen on this host)")
	fs.IntVar(&o.dnsCacheSize, "dns-cache-size", dns.DefaultSize, "most host names -d remembers")
	fs.StringVar(&o.cgroupPath, "cgroup", "", "only processes in this cgroup v2 `PATH` or below it")
	fs.StringVar(&netns, "netns", "", "only processes in this network namespace (`INO` or a path like /proc/PID/ns/net)")
	fs.StringVar(&o.tracer.CgroupMap, "cgroupmap", "", "bcc: only cgroups whose ids are keys of this pinned BPF hash `MAP`")
	fs.StringVar(&o.tracer.MntnsMap, "mntnsmap", "", "bcc: only mount namespaces whose inodes are keys of this pinned BPF hash `MAP`")
	fs.StringVar(&backend, "backend", "auto", "how to hook the kernel: auto, fentry, kprobe or sockops")
	fs.BoolVar(&o.tracer.SyncErrors, "sync-errors", false, "sockops backend: also report connect()s that fail before any SYN for lack of a route (with their errno) by hooking the connect syscall; slows every syscall of every process on the host by ~35 % (README)")
	fs.StringVar(&bufSize, "buffer-size", formatSize(tracer.DefaultBufferSize), "ring buffer size in bytes (K and M suffixes; a power of two)")
	fs.IntVar(&maxPending, "max-pending", tracer.DefaultMaxPending, "attempts awaiting an answer that -r can follow at once")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "say on stderr which backend was chosen and why others were not")
	fs.BoolVarP(&help, "help", "h", false, "show this help")

	usage := usageHead + fs.FlagUsages()
	withUsage := func(err error) error {
		var u errUsage
		if !errors.As(err, &u) {
			u = errUsage{err: err}
		}
		u.usage = usage
		return u
	}
	if err := fs.Parse(args); err != nil {
		return nil, withUsage(err)
	}
	if help {
		fmt.Fprint(helpOut, usage)
		return nil, errHelp
	}
	if fs.NArg() > 0 {
		for i, a := range args {
			if a == "--container" && i+1 < len(args) && args[i+1] == fs.Arg(0) {
				return nil, withUsage(fmt.Errorf("unexpected argument %q (to filter on a container, write --container=%s)", fs.Arg(0), fs.Arg(0)))
			}
		}
		return nil, withUsage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	err := o.fill(pid, ports, uid, ipv4, ipv6, backend, bufSize, maxPending, failed, minLatency)
	if err == nil {
		err = o.fillContext(fs.Changed("container"), netns)
	}
	if err == nil {
		err = o.fillDaemon(fs.Changed)
	}
	if err == nil {
		err = o.fillWho()
	}
	if err != nil {
		return nil, withUsage(err)
	}
	return &o, nil
}

func (o *options) fill(pid, ports, uid string, ipv4, ipv6 bool, backend, bufSize string, maxPending int, failed bool, minLatency float64) error {
	c := &o.tracer
	if pid != "" {
		n, err := strconv.ParseUint(pid, 10, 32)
		if err != nil || n == 0 {
			return usagef("invalid PID %q: want a positive number", pid)
		}
		c.PID = uint32(n)
	}
	if uid != "" {
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return usagef("invalid UID %q: want a number", uid)
		}
		c.UIDFilter, c.UID = true, uint32(n)
	}
	if ports != "" {
		for _, p := range strings.Split(ports, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
			if err != nil || n == 0 {
				return usagef("invalid port %q: want 1-65535", p)
			}
			c.Ports = append(c.Ports, uint16(n))
		}
	}
	switch {
	case ipv4 && ipv6:
		return usagef("-4 and -6 exclude each other")
	case ipv4:
		c.Family = event.FamilyIPv4
	case ipv6:
		c.Family = event.FamilyIPv6
	}
	b, err := tracer.ParseBackend(backend)
	if err != nil {
		return errUsage{err: err}
	}
	c.Backend = b
	size, err := parseSize(bufSize)
	if err != nil {
		return errUsage{err: err}
	}
	c.BufferSize = size
	if maxPending < 1 {
		return usagef("invalid --max-pending %d: want at least 1", maxPending)
	}
	c.MaxPending = maxPending
	if minLatency < 0 {
		return usagef("invalid --min-latency %v: want 0 or more", minLatency)
	}
	if failed || minLatency > 0 {
		o.results = true
	}
	if o.count && o.results {
		return usagef("-c counts attempts; it cannot be combined with -r, --failed or --min-latency")
	}
	c.Outcomes = o.results
	c.OnlyFailed = failed
	c.MinLatency = time.Duration(minLatency * float64(time.Millisecond))
	c.Count = o.count
	return nil
}

// fillWho checks --exe and --comm and decides whether the tracer follows
// processes: for JSON (whose keys exe, args, parent_* always exist), -W
// and --exe; not for the plain table, -c or --output none, which would
// pay for exec hooks they do not print.
func (o *options) fillWho() error {
	c := &o.tracer
	if c.Exe != "" && (!strings.HasPrefix(c.Exe, "/") || filepath.Clean(c.Exe) != c.Exe || len(c.Exe) > tracer.ExeMax) {
		return usagef("invalid --exe %q: want a clean absolute path of at most %d bytes", c.Exe, tracer.ExeMax)
	}
	if len(c.Comm) > 15 {
		return usagef("invalid --comm %q: a thread name has at most 15 bytes", c.Comm)
	}
	if o.wide && o.json {
		return usagef("-W widens the table; JSON always has its keys")
	}
	c.Processes = !o.count && o.daemon.output != outputNone && (o.json || o.wide)
	return nil
}

// containerColumnOnly is --container given without a value.
const containerColumnOnly = "-"

func (o *options) fillContext(containerSet bool, netns string) error {
	if o.dnsCacheSize < 1 {
		return usagef("invalid --dns-cache-size %d: want at least 1", o.dnsCacheSize)
	}
	if containerSet {
		o.container = true
		if o.containerPrefix == containerColumnOnly {
			o.containerPrefix = ""
		} else {
			p := strings.ToLower(o.containerPrefix)
			if p == "" || strings.Trim(p, "0123456789abcdef") != "" || len(p) > 64 {
				return usagef("invalid --container=%q: want a prefix of a container id (hex)", o.containerPrefix)
			}
			o.containerPrefix = p
		}
	}
	if netns != "" {
		if n, err := strconv.ParseUint(netns, 10, 32); err == nil {
			o.tracer.Netns = uint32(n)
		} else {
			var st unix.Stat_t
			if err := unix.Stat(netns, &st); err != nil {
				return usagef("invalid --netns %q: want an inode number or a namespace file: %v", netns, err)
			}
			o.tracer.Netns = uint32(st.Ino)
		}
	}
	return nil
}

// formatSize writes a byte count as parseSize reads it, with the largest
// suffix that divides it.
func formatSize(n int) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "M"
	case n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "K"
	}
	return strconv.Itoa(n)
}

// parseSize reads a byte count with an optional K or M suffix.
func parseSize(s string) (int, error) {
	mult := 1
	t := strings.ToUpper(strings.TrimSpace(s))
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid --buffer-size %q: want a size like 4M", s)
	}
	size := n * mult
	if size&(size-1) != 0 || size < 4096 || size > 1<<30 {
		return 0, fmt.Errorf("invalid --buffer-size %q: want a power of two from 4K to 1024M", s)
	}
	return size, nil
}
