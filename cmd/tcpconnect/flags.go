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
	"github.com/tcpconnect/tcpconnect/internal/buildinfo"
	"github.com/tcpconnect/tcpconnect/internal/dns"
	"github.com/tcpconnect/tcpconnect/internal/docgen"
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
	why     bool // -w
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

// errHelp means -h or --version was asked for: the answer went to
// stdout; exit 0.
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

// flagValues holds what the command line sets before parseFlags checks
// it and turns it into options.
type flagValues struct {
	o          options
	pid        string
	ports      string
	uid        string
	ipv4, ipv6 bool
	lport      bool
	backend    string
	bufSize    string
	maxPending int64
	failed     bool
	minLatency float64
	help       bool
	version    bool
	netns      string
}

// newFlagSet declares every flag. It is the one description of the
// command line: the help text, the man page, docs/flags.md and the shell
// completions are all made from it (docs_test.go), so a flag declared here
// is documented everywhere. docgen.Complete annotations tell the completions
// what a flag's value can be.
func newFlagSet() (*pflag.FlagSet, *flagValues) {
	fs := pflag.NewFlagSet("tcpconnect", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	v := &flagValues{}
	o := &v.o
	fs.BoolVarP(&o.stamp, "timestamp", "t", false, "include a TIME(s) column: seconds since tracing started")
	fs.StringVarP(&v.pid, "pid", "p", "", "trace this `PID` only")
	fs.StringVarP(&v.ports, "port", "P", "", fmt.Sprintf("comma-separated list of destination `PORTS` to trace (up to %d)", tracer.MaxPorts))
	fs.BoolVarP(&v.ipv4, "ipv4", "4", false, "trace IPv4 family only")
	fs.BoolVarP(&v.ipv6, "ipv6", "6", false, "trace IPv6 family only")
	fs.BoolVarP(&o.uidCol, "print-uid", "U", false, "include a UID column")
	fs.StringVarP(&v.uid, "uid", "u", "", "trace this `UID` only")
	fs.BoolVarP(&o.count, "count", "c", false, "count connects per source address, destination address and port; print at Ctrl-C")
	fs.BoolVarP(&v.lport, "lport", "L", false, "accepted for bcc compatibility: SPORT is always shown")
	fs.BoolVarP(&o.results, "result", "r", false, "print each attempt when it ends, with LAT(ms) and RESULT columns")
	fs.BoolVarP(&o.why, "why", "w", false, "add REALDEST (after local NAT), RETX (SYN retransmissions) and WHY (local drop reason, ICMP error and sender) columns, or their JSON keys (implies -r; hooks every packet of the host: see docs/why.md)")
	fs.BoolVar(&v.failed, "failed", false, "only failed attempts (implies -r)")
	fs.Float64Var(&v.minLatency, "min-latency", 0, "only attempts whose handshake took at least `MS` milliseconds (implies -r)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per line (schema: docs/json.md)")
	addDaemonFlags(fs, &o.daemon)
	fs.StringVar(&o.containerPrefix, "container", "", "add a CONTAINER column; --container=`ID-PREFIX` also keeps only containers whose id starts so")
	fs.Lookup("container").NoOptDefVal = containerColumnOnly
	fs.BoolVarP(&o.extended, "extended", "x", false, "add PPID and CGROUP columns")
	fs.BoolVarP(&o.wide, "wide", "W", false, "add USER and PCOMM (the parent's name) after COMM, and EXE and ARGS (the program and its command line, captured at exec) at the end")
	fs.StringVar(&o.tracer.Exe, "exe", "", "only processes running this executable: its full `PATH` as the process's mount namespace sees it")
	fs.StringVar(&o.tracer.Comm, "comm", "", "only threads with this exact `NAME` (as Inspektor Gadget's --comm; any process can rename its threads)")
	fs.BoolVarP(&o.dns, "dns", "d", false, "add a DNAME column: the host name the process resolved to DADDR (from DNS answers seen on this host)")
	fs.IntVar(&o.dnsCacheSize, "dns-cache-size", dns.DefaultSize, fmt.Sprintf("most host names -d remembers (at most %d)", maxDNSCacheSize))
	fs.StringVar(&o.cgroupPath, "cgroup", "", "only processes in this cgroup v2 `PATH` or below it")
	fs.StringVar(&v.netns, "netns", "", "only processes in this network namespace (`INO` or a path like /proc/PID/ns/net)")
	fs.StringVar(&o.tracer.CgroupMap, "cgroupmap", "", "bcc: only cgroups whose ids are keys of this pinned BPF hash `MAP`")
	fs.StringVar(&o.tracer.MntnsMap, "mntnsmap", "", "bcc: only mount namespaces whose inodes are keys of this pinned BPF hash `MAP`")
	fs.StringVar(&v.backend, "backend", "auto", "how to hook the kernel: `BACKEND` is auto, fentry, kprobe or sockops")
	fs.BoolVar(&o.tracer.SyncErrors, "sync-errors", false, "sockops backend: also report connect()s that fail before any SYN for lack of a route (with their errno) by hooking the connect syscall; slows every syscall of every process on the host by ~35 % (docs/backends.md)")
	fs.StringVar(&v.bufSize, "buffer-size", formatSize(tracer.DefaultBufferSize), "ring buffer `SIZE` in bytes (K and M suffixes; a power of two)")
	fs.Int64Var(&v.maxPending, "max-pending", tracer.DefaultMaxPending, fmt.Sprintf("attempts awaiting an answer that -r can follow at once (at most %d)", maxMaxPending))
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "say on stderr which backend was chosen and why others were not")
	fs.BoolVar(&v.version, "version", false, "print the version, the commit and the Go version of this build, and exit")
	fs.BoolVarP(&v.help, "help", "h", false, "show this help")

	backends := []string{string(tracer.BackendAuto)}
	for _, b := range tracer.Backends {
		backends = append(backends, string(b))
	}
	docgen.Complete(fs, "backend", docgen.Words, backends...)
	docgen.Complete(fs, "output", docgen.Words, outputTable, outputJSON, outputNone)
	docgen.Complete(fs, "pid", docgen.PIDs)
	docgen.Complete(fs, "uid", docgen.UIDs)
	docgen.Complete(fs, "cgroup", docgen.Dirs)
	docgen.Complete(fs, "netns", docgen.Files)
	docgen.Complete(fs, "cgroupmap", docgen.Files)
	docgen.Complete(fs, "mntnsmap", docgen.Files)
	return fs, v
}

// parseFlags turns args (without the program name) into options. Usage
// errors come back as errUsage, carrying the usage text; -h writes it to
// helpOut, and --version its line.
func parseFlags(args []string, helpOut io.Writer) (*options, error) {
	fs, v := newFlagSet()
	o := &v.o
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
	if v.help {
		fmt.Fprint(helpOut, usage)
		return nil, errHelp
	}
	if v.version {
		fmt.Fprintln(helpOut, buildinfo.Get())
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
	err := o.fill(v.pid, v.ports, v.uid, v.ipv4, v.ipv6, v.backend, v.bufSize, v.maxPending, v.failed, v.minLatency)
	if err == nil {
		err = o.fillContext(fs.Changed("container"), v.netns)
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
	return o, nil
}

// Upper bounds of numeric flags: each costs memory (the attempts map is
// allocated in full in the kernel, ~170 bytes an entry, charged to our
// cgroup; a name ~300 bytes of heap), and the DaemonSet runs in 256 MiB.
const (
	maxMaxPending   = 1 << 18
	maxDNSCacheSize = 100000
	// A handshake that takes longer than a day has long been given up
	// (tcp_syn_retries at its largest gives up within hours).
	maxMinLatencyMS = 24 * 3600 * 1000
)

func (o *options) fill(pid, ports, uid string, ipv4, ipv6 bool, backend, bufSize string, maxPending int64, failed bool, minLatency float64) error {
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
		var err error
		if c.Ports, err = tracer.ParsePorts(ports); err != nil {
			return usagef("invalid -P %q: %v", ports, err)
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
	if maxPending < 1 || maxPending > maxMaxPending {
		return usagef("invalid --max-pending %d: want 1 to %d", maxPending, maxMaxPending)
	}
	c.MaxPending = int(maxPending)
	// !(x >= 0) also catches NaN.
	if !(minLatency >= 0) || minLatency > maxMinLatencyMS {
		return usagef("invalid --min-latency %v: want 0 to %d milliseconds", minLatency, maxMinLatencyMS)
	}
	if failed || minLatency > 0 || o.why {
		o.results = true
	}
	if o.count && o.results {
		return usagef("-c counts attempts; it cannot be combined with -r, -w, --failed or --min-latency")
	}
	c.Outcomes = o.results
	c.Why = o.why
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
	if o.dnsCacheSize < 1 || o.dnsCacheSize > maxDNSCacheSize {
		return usagef("invalid --dns-cache-size %d: want 1 to %d", o.dnsCacheSize, maxDNSCacheSize)
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
		ino, err := parseNetns(netns)
		if err != nil {
			return err
		}
		o.tracer.Netns = ino
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

// parseNetns reads --netns: a namespace inode number, or a file that is a
// network namespace (/proc/PID/ns/net, a bind mount of one under
// /run/netns). Any other file would filter everything out.
func parseNetns(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n == 0 {
			return 0, usagef("invalid --netns 0: want a namespace inode number or a network namespace file")
		}
		return uint32(n), nil
	}
	fd, err := unix.Open(s, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, usagef("invalid --netns %q: want an inode number or a network namespace file: %v", s, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if unix.Fstat(fd, &st) != nil || unix.Fstatfs(fd, &sfs) != nil || sfs.Type != unix.NSFS_MAGIC {
		return 0, usagef("invalid --netns %q: not a namespace file (want /proc/PID/ns/net or an inode number)", s)
	}
	// NS_GET_NSTYPE (Linux 4.11) says which kind of namespace it is.
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return 0, usagef("invalid --netns %q: cannot tell its namespace type: %v", s, err)
	}
	if typ != unix.CLONE_NEWNET {
		return 0, usagef("invalid --netns %q: a namespace, but not a network namespace", s)
	}
	return uint32(st.Ino), nil
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
	if n > (1<<30)/mult {
		return 0, fmt.Errorf("invalid --buffer-size %q: want a power of two from 4K to 1024M", s)
	}
	size := n * mult
	if size&(size-1) != 0 || size < 4096 || size > 1<<30 {
		return 0, fmt.Errorf("invalid --buffer-size %q: want a power of two from 4K to 1024M", s)
	}
	return size, nil
}
