// SPDX-License-Identifier: Apache-2.0

// Package output prints events: the table of tcpconnect(8), JSON lines,
// and the counts of -c. It knows nothing of BPF, and it formats by
// appending into one reused buffer, so printing an event does not
// allocate.
package output

import (
	"bufio"
	"cmp"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// Options shape the output.
type Options struct {
	// Timestamp prints TIME(s), seconds since StartMono, instead of the
	// wall clock (bcc's -t).
	Timestamp bool
	StartMono uint64
	// PrintUID adds the UID column (-U).
	PrintUID bool
	// Results adds LAT(ms) and RESULT (-r).
	Results bool
	// Why adds, after RESULT, where the SYN really went after local NAT
	// (REALDEST), its retransmissions (RETX) and what the host saw of its
	// fate (WHY): a local drop's reason, an ICMP error and its sender
	// (-w, with Results).
	Why bool
	// IPv4Only lets the table use narrow address columns (-4).
	IPv4Only bool
	// Backend is reported in JSON as "backend".
	Backend string
	// Container adds the CONTAINER column; Extended adds PPID and CGROUP.
	Container bool
	Extended  bool
	// Names, if set, names destination addresses (-d): the DNAME column
	// and the JSON key daddr_name.
	Names AddrNamer
	// Cgroups names cgroup ids (for CGROUP, CONTAINER and the JSON keys
	// cgroup_path and container_id); nil leaves them empty.
	Cgroups CgroupNamer
	// Who adds USER and PCOMM after COMM, and EXE and ARGS at the end of
	// the row (-W).
	Who bool
	// Users names UIDs (the USER column, the JSON key user); nil: none.
	Users UserNamer
}

// UserNamer gives the name of a UID as the host resolves it.
type UserNamer interface {
	Lookup(uid uint32) (string, bool)
}

// CgroupNamer gives a cgroup id's path under the cgroup v2 mount and the
// container id found in it ("" when none).
type CgroupNamer interface {
	Lookup(id uint64) (path, container string)
}

// AddrNamer gives the host name that an address was resolved from, by
// a socket of user uid in network namespace netns (its cookie: a connect is named
// only by what its own namespace and user resolved).
type AddrNamer interface {
	Lookup(netns uint64, uid uint32, addr netip.Addr) (string, bool)
}

// lookupCgroup is Cgroups.Lookup, tolerating a nil namer.
func (o *Options) lookupCgroup(id uint64) (path, container string) {
	if o.Cgroups == nil {
		return "", ""
	}
	return o.Cgroups.Lookup(id)
}

// Printer writes events in one format. Callers hand it events and call
// Flush when a batch is done; Flush writes to the underlying writer.
type Printer interface {
	Header() error
	Event(*event.Event) error
	Flush() error
}

// writerSize is large enough that a drained ring buffer is usually one
// write(2).
const writerSize = 1 << 20

type base struct {
	w    *bufio.Writer
	buf  []byte
	opts Options
	// scratch holds escaped text before it is quoted or padded.
	scratch []byte
	// procs keeps each process's formatted EXE/ARGS (table) or process
	// keys (JSON): a command line is up to 2 KiB to escape, and a
	// process usually makes many attempts. Processes are immutable, so
	// the pointer is the key; cleared when it grows past maxProcs.
	procs map[*event.Process][]byte
}

const maxProcs = 4096

// procFragment returns the cached rendering of p, making it with f.
func (b *base) procFragment(p *event.Process, f func([]byte) []byte) []byte {
	if frag, ok := b.procs[p]; ok {
		return frag
	}
	if b.procs == nil || len(b.procs) >= maxProcs {
		b.procs = make(map[*event.Process][]byte)
	}
	frag := f(nil)
	b.procs[p] = frag
	return frag
}

func newBase(w io.Writer, opts Options) base {
	return base{w: bufio.NewWriterSize(w, writerSize), buf: make([]byte, 0, 512), opts: opts}
}

func (b *base) Flush() error { return b.w.Flush() }

// write hands the formatted line to the buffered writer.
func (b *base) write() error {
	_, err := b.w.Write(b.buf)
	return err
}

// Table prints the columns of tcpconnect(8).
type Table struct {
	base
	addrWidth int
}

// NewTable returns a table printer on w.
func NewTable(w io.Writer, opts Options) *Table {
	return &Table{base: newBase(w, opts), addrWidth: addrWidth(opts.IPv4Only)}
}

// addrWidth is the width of an address column: 39, the longest IPv6
// address netip prints, so that v6 addresses never shift the columns; 15
// (255.255.255.255) when only IPv4 is traced.
func addrWidth(ipv4Only bool) int {
	if ipv4Only {
		return len("255.255.255.255")
	}
	return len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
}

// col ends a row's column that started at from: padded to width, and
// always followed by at least one space, so that a value longer than its
// column (an escaped process name, an errno name) cannot run into the
// next one.
func col(dst []byte, from, width int) []byte {
	dst = pad(dst, from, width-1)
	return append(dst, ' ')
}

func pad(dst []byte, from, width int) []byte {
	for n := len(dst) - from; n < width; n++ {
		dst = append(dst, ' ')
	}
	return dst
}

// Header writes the column titles.
func (t *Table) Header() error {
	b := t.buf[:0]
	if t.opts.Timestamp {
		b = append(b, "TIME(s)   "...)
	} else {
		b = append(b, "TIME     "...)
	}
	if t.opts.PrintUID {
		b = append(b, "UID    "...)
	}
	b = append(b, "PID     "...)
	if t.opts.Extended {
		b = append(b, "PPID    "...)
	}
	b = append(b, "COMM             "...)
	if t.opts.Who {
		b = append(b, "USER     PCOMM            "...)
	}
	if t.opts.Container {
		b = append(b, "CONTAINER    "...)
	}
	s := len(b)
	b = append(b, "SADDR"...)
	b = pad(b, s, t.addrWidth+1)
	b = append(b, "SPORT  "...)
	s = len(b)
	b = append(b, "DADDR"...)
	b = pad(b, s, t.addrWidth+1)
	// Each title is padded as its column is in Event, so that titles
	// never run together.
	more := t.opts.Extended || t.opts.Names != nil
	s = len(b)
	b = append(b, "DPORT"...)
	if t.opts.Results {
		b = col(b, s, 7)
		b = append(b, "LAT(ms)    "...)
		s = len(b)
		b = append(b, "RESULT"...)
		if more || t.opts.Why {
			b = col(b, s, resultWidth)
		}
		if t.opts.Why {
			s = len(b)
			b = append(b, "REALDEST"...)
			b = col(b, s, t.addrWidth+9)
			s = len(b)
			b = append(b, "RETX"...)
			b = col(b, s, 6)
			s = len(b)
			b = append(b, "WHY"...)
			if more {
				b = col(b, s, whyWidth)
			}
		}
	} else if more {
		b = col(b, s, 7)
	}
	if t.opts.Names != nil {
		s = len(b)
		b = append(b, "DNAME"...)
		if t.opts.Extended {
			b = col(b, s, dnameWidth)
		}
	}
	if t.opts.Extended {
		b = append(b, "CGROUP"...)
	}
	if t.opts.Who {
		b = endSep(b)
		b = append(b, "EXE ARGS"...)
	}
	b = append(b, '\n')
	t.buf = b
	return t.write()
}

// dnameWidth is the DNAME column's width when CGROUP follows it.
const dnameWidth = 32

// whyWidth is the WHY column's width when another column follows: an ICMP
// error from an IPv4 router fits.
const whyWidth = 36

// appendWhy writes the columns of -w: REALDEST (the address and port the
// SYN left for after local NAT, "-" when not translated), RETX and WHY
// ("-", or the local drop's reason and the ICMP error, comma-separated).
func (t *Table) appendWhy(b []byte, e *event.Event) []byte {
	w := &e.Why
	s := len(b)
	if w.NatDaddr.IsValid() {
		b = netip.AddrPortFrom(w.NatDaddr, w.NatDport).AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = col(b, s, t.addrWidth+9)
	s = len(b)
	b = strconv.AppendUint(b, uint64(w.SynRetransmits), 10)
	b = col(b, s, 6)
	s = len(b)
	switch {
	case w.DropReason != "" || w.ICMP:
		if w.DropReason != "" {
			b = append(b, "drop:"...)
			b = appendEscaped(b, unsafeBytes(w.DropReason))
		}
		if w.ICMP {
			if w.DropReason != "" {
				b = append(b, ',')
			}
			b = appendICMP(b, w)
		}
	default:
		b = append(b, '-')
	}
	if t.opts.Extended || t.opts.Names != nil {
		b = col(b, s, whyWidth)
	}
	return b
}

// appendICMP writes "icmp:TYPE/CODE@FROM", e.g. icmp:3/1@10.0.0.1.
func appendICMP(b []byte, w *event.Why) []byte {
	b = append(b, "icmp:"...)
	b = strconv.AppendUint(b, uint64(w.ICMPType), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(w.ICMPCode), 10)
	b = append(b, '@')
	return w.ICMPFrom.AppendTo(b)
}

// resultWidth is the RESULT column's width when another column follows.
const resultWidth = 13

// Event formats one attempt as a table row.
func (t *Table) Event(e *event.Event) error {
	b := t.buf[:0]
	s := len(b)
	if t.opts.Timestamp {
		secs := float64(int64(e.Mono-t.opts.StartMono)) / 1e9
		b = strconv.AppendFloat(b, secs, 'f', 3, 64)
		b = col(b, s, 10)
	} else {
		b = e.Time.AppendFormat(b, time.TimeOnly)
		b = append(b, ' ')
	}
	if t.opts.PrintUID {
		s = len(b)
		b = strconv.AppendUint(b, uint64(e.UID), 10)
		b = col(b, s, 7)
	}
	s = len(b)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = col(b, s, 8)
	if t.opts.Extended {
		s = len(b)
		b = strconv.AppendUint(b, uint64(e.PPID), 10)
		b = col(b, s, 8)
	}
	s = len(b)
	b = appendEscaped(b, e.CommBytes())
	b = col(b, s, 17)
	if t.opts.Who {
		s = len(b)
		b = t.appendUser(b, e.UID)
		b = col(b, s, 9)
		s = len(b)
		if e.Proc != nil && e.Proc.ParentComm != "" {
			b = appendEscaped(b, unsafeBytes(e.Proc.ParentComm))
		} else {
			b = append(b, '-')
		}
		b = col(b, s, 17)
	}
	var cgPath, container string
	if t.opts.Container || t.opts.Extended {
		cgPath, container = t.opts.lookupCgroup(e.CgroupID)
	}
	if t.opts.Container {
		s = len(b)
		if container == "" {
			b = append(b, '-')
		} else {
			b = append(b, container[:12]...)
		}
		b = col(b, s, 13)
	}
	s = len(b)
	b = e.Saddr.AppendTo(b)
	b = col(b, s, t.addrWidth+1)
	s = len(b)
	b = strconv.AppendUint(b, uint64(e.Sport), 10)
	b = col(b, s, 7)
	s = len(b)
	b = e.Daddr.AppendTo(b)
	b = col(b, s, t.addrWidth+1)
	if t.opts.Results {
		s = len(b)
		b = strconv.AppendUint(b, uint64(e.Dport), 10)
		b = col(b, s, 7)
		s = len(b)
		b = strconv.AppendFloat(b, float64(e.Latency)/float64(time.Millisecond), 'f', 3, 64)
		b = col(b, s, 11)
		s = len(b)
		b = appendResult(b, e)
		if t.opts.Extended || t.opts.Names != nil || t.opts.Why || t.opts.Who {
			b = col(b, s, resultWidth)
		}
		if t.opts.Why {
			b = t.appendWhy(b, e)
		}
	} else {
		s = len(b)
		b = strconv.AppendUint(b, uint64(e.Dport), 10)
		if t.opts.Extended || t.opts.Names != nil || t.opts.Who {
			b = col(b, s, 7)
		}
	}
	if t.opts.Names != nil {
		s = len(b)
		if name, ok := t.opts.Names.Lookup(e.NetnsCookie, e.UID, e.Daddr); ok {
			b = appendEscaped(b, unsafeBytes(name))
		} else {
			b = append(b, '-')
		}
		if t.opts.Extended || t.opts.Who {
			b = col(b, s, dnameWidth)
		}
	}
	if t.opts.Extended {
		b = appendPath(b, cgPath)
	}
	if t.opts.Who {
		b = endSep(b)
		if e.Proc == nil {
			b = appendWho(b, nil)
		} else {
			b = append(b, t.procFragment(e.Proc, func(dst []byte) []byte { return appendWho(dst, e.Proc) })...)
		}
	}
	b = append(b, '\n')
	t.buf = b
	return t.write()
}

// endSep ends the row's fixed columns before EXE: two spaces in all.
func endSep(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == ' ' {
		return append(b, ' ')
	}
	return append(b, "  "...)
}

// appendUser writes the user name of uid, or the number when the host
// has no name for it.
func (b *base) appendUser(dst []byte, uid uint32) []byte {
	if b.opts.Users != nil {
		if name, ok := b.opts.Users.Lookup(uid); ok {
			return appendEscaped(dst, unsafeBytes(name))
		}
	}
	return strconv.AppendUint(dst, uint64(uid), 10)
}

// appendWho writes EXE and ARGS: each a single token (a space inside
// becomes \x20, the rest is escaped as appendEscaped does), the
// arguments separated by spaces, an empty one as "", and a command line
// longer than the kernel keeps followed by " [+N bytes]". "-" when the
// process is unknown.
func appendWho(b []byte, p *event.Process) []byte {
	if p == nil || p.Exe == "" {
		b = append(b, '-')
	} else {
		b = appendToken(b, p.Exe)
	}
	if p == nil {
		return b
	}
	for _, a := range p.Args {
		b = append(b, ' ')
		if a == "" {
			b = append(b, `""`...)
			continue
		}
		// A leading quote is escaped, so that `""` always means an empty
		// argument and never the two characters.
		if a[0] == '"' {
			b = append(b, `\x22`...)
			a = a[1:]
		}
		b = appendToken(b, a)
	}
	if p.ArgsCut {
		kept := 0
		for _, a := range p.Args {
			kept += len(a) + 1
		}
		b = append(b, " [+"...)
		b = strconv.AppendInt(b, int64(max(p.ArgsLen-kept+1, 0)), 10)
		b = append(b, " bytes]"...)
	}
	return b
}

// appendToken escapes s as appendEscaped does, and its spaces too.
func appendToken(b []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return appendEscaped(b, unsafeBytes(s))
		}
		b = appendEscaped(b, unsafeBytes(s[:i]))
		b = append(b, `\x20`...)
		s = s[i+1:]
	}
}

// appendPath writes a cgroup path, escaped (container runtimes name
// cgroups after untrusted input), or "-" when unknown.
func appendPath(b []byte, path string) []byte {
	if path == "" {
		return append(b, '-')
	}
	return appendEscaped(b, unsafeBytes(path))
}

// appendResult writes the RESULT word; "error" carries its errno name,
// since it is the only result that the word alone does not explain.
func appendResult(b []byte, e *event.Event) []byte {
	b = append(b, e.Result.String()...)
	if e.Result == event.ResultError && e.Errno != 0 {
		b = append(b, ':')
		b = appendErrno(b, e.Errno)
	}
	return b
}

func appendErrno(b []byte, errno unix.Errno) []byte {
	if name := unix.ErrnoName(errno); name != "" {
		return append(b, name...)
	}
	b = append(b, "errno"...)
	return strconv.AppendInt(b, int64(errno), 10)
}

// JSON prints one object per line; keys are documented in docs/json.md.
type JSON struct {
	base
}

// NewJSON returns a JSON-lines printer on w.
func NewJSON(w io.Writer, opts Options) *JSON {
	return &JSON{base: newBase(w, opts)}
}

// Header writes nothing: JSON lines have no header.
func (j *JSON) Header() error { return nil }

// Event formats one attempt as a JSON object.
func (j *JSON) Event(e *event.Event) error {
	b := append(j.buf[:0], `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","pid":`...)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(e.TID), 10)
	b = append(b, `,"comm":`...)
	j.scratch = appendEscaped(j.scratch[:0], e.CommBytes())
	b = appendJSONString(b, j.scratch)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(e.UID), 10)
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(e.PPID), 10)
	b = append(b, `,"pid_ns_pid":`...)
	b = strconv.AppendUint(b, uint64(e.PIDNsPID), 10)
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, e.CgroupID, 10)
	cgPath, container := j.opts.lookupCgroup(e.CgroupID)
	b = append(b, `,"cgroup_path":`...)
	j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(cgPath))
	b = appendJSONString(b, j.scratch)
	b = append(b, `,"container_id":"`...)
	b = append(b, container...) // 64 hex digits or nothing
	b = append(b, `","netns_ino":`...)
	b = strconv.AppendUint(b, uint64(e.NetnsIno), 10)
	b = append(b, `,"mntns_ino":`...)
	b = strconv.AppendUint(b, uint64(e.MntnsIno), 10)
	b = append(b, `,"family":"`...)
	b = append(b, e.Family.String()...)
	b = append(b, `","saddr":"`...)
	b = e.Saddr.AppendTo(b)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(e.Sport), 10)
	b = append(b, `,"daddr":"`...)
	b = e.Daddr.AppendTo(b)
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(e.Dport), 10)
	if j.opts.Names != nil {
		b = append(b, `,"daddr_name":`...)
		if name, ok := j.opts.Names.Lookup(e.NetnsCookie, e.UID, e.Daddr); ok {
			j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(name))
			b = appendJSONString(b, j.scratch)
		} else {
			b = append(b, "null"...)
		}
	}
	b = append(b, `,"user":`...)
	if name, ok := j.lookupUser(e.UID); ok {
		j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(name))
		b = appendJSONString(b, j.scratch)
	} else {
		b = append(b, "null"...)
	}
	if e.Proc == nil {
		b = j.appendProcess(b, nil)
	} else {
		b = append(b, j.procFragment(e.Proc, func(dst []byte) []byte { return j.appendProcess(dst, e.Proc) })...)
	}
	b = append(b, `,"backend":"`...)
	b = append(b, j.opts.Backend...)
	b = append(b, '"')
	// The outcome keys appear once the outcome is known: always with -r,
	// and for attempts that failed inside connect() in every mode.
	if j.opts.Results || e.Result != event.ResultUnknown {
		b = append(b, `,"result":"`...)
		b = append(b, e.Result.String()...)
		b = append(b, `","errno":`...)
		if e.Errno != 0 {
			b = append(b, '"')
			b = appendErrno(b, e.Errno)
			b = append(b, '"')
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"latency_us":`...)
		b = strconv.AppendInt(b, e.Latency.Microseconds(), 10)
		if j.opts.Why {
			b = j.appendWhy(b, &e.Why)
		}
	}
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

// appendWhy writes the keys of what the host saw happen to the SYNs
// (null when there is nothing to say).
func (j *JSON) appendWhy(b []byte, w *event.Why) []byte {
	b = append(b, `,"nat_daddr":`...)
	if w.NatDaddr.IsValid() {
		b = append(b, '"')
		b = w.NatDaddr.AppendTo(b)
		b = append(b, `","nat_dport":`...)
		b = strconv.AppendUint(b, uint64(w.NatDport), 10)
	} else {
		b = append(b, `null,"nat_dport":null`...)
	}
	b = append(b, `,"syn_retransmits":`...)
	b = strconv.AppendUint(b, uint64(w.SynRetransmits), 10)
	b = append(b, `,"drop_reason":`...)
	if w.DropReason != "" {
		j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(w.DropReason))
		b = appendJSONString(b, j.scratch)
	} else {
		b = append(b, "null"...)
	}
	if w.ICMP {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendUint(b, uint64(w.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendUint(b, uint64(w.ICMPCode), 10)
		b = append(b, `,"icmp_from":"`...)
		b = w.ICMPFrom.AppendTo(b)
		b = append(b, '"')
	} else {
		b = append(b, `,"icmp_type":null,"icmp_code":null,"icmp_from":null`...)
	}
	return b
}

func (b *base) lookupUser(uid uint32) (string, bool) {
	if b.opts.Users == nil {
		return "", false
	}
	return b.opts.Users.Lookup(uid)
}

// appendProcess writes the keys exe, args, args_truncated, parent_comm
// and parent_exe; null where unknown.
func (j *JSON) appendProcess(b []byte, p *event.Process) []byte {
	str := func(b []byte, key, s string, known bool) []byte {
		b = append(b, key...)
		if !known {
			return append(b, "null"...)
		}
		j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(s))
		return appendJSONString(b, j.scratch)
	}
	if p == nil {
		return append(b, `,"exe":null,"args":null,"args_truncated":false,"parent_comm":null,"parent_exe":null`...)
	}
	b = str(b, `,"exe":`, p.Exe, p.Exe != "")
	b = append(b, `,"args":`...)
	if p.Args == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range p.Args {
			if i > 0 {
				b = append(b, ',')
			}
			j.scratch = appendEscaped(j.scratch[:0], unsafeBytes(a))
			b = appendJSONString(b, j.scratch)
		}
		b = append(b, ']')
	}
	b = append(b, `,"args_truncated":`...)
	b = strconv.AppendBool(b, p.ArgsCut)
	b = str(b, `,"parent_comm":`, p.ParentComm, p.ParentComm != "")
	return str(b, `,"parent_exe":`, p.ParentExe, p.ParentExe != "")
}

// sortCounts orders counts as -c prints them: most connects first, then
// by addresses and port so that the order is stable.
func sortCounts(counts []event.Count) {
	slices.SortFunc(counts, func(a, b event.Count) int {
		if c := cmp.Compare(b.Connects, a.Connects); c != 0 {
			return c
		}
		if c := a.Saddr.Compare(b.Saddr); c != 0 {
			return c
		}
		if c := a.Daddr.Compare(b.Daddr); c != 0 {
			return c
		}
		return cmp.Compare(a.Dport, b.Dport)
	})
}

// WriteCounts prints the counts of -c, sorted, as a table or JSON lines.
func WriteCounts(w io.Writer, counts []event.Count, asJSON, ipv4Only bool) error {
	sortCounts(counts)
	bw := bufio.NewWriter(w)
	width := addrWidth(ipv4Only)
	var b []byte
	if !asJSON {
		b = append(b, "SADDR"...)
		b = pad(b, 0, width+1)
		s := len(b)
		b = append(b, "DADDR"...)
		b = pad(b, s, width+1)
		b = append(b, "DPORT  CONNECTS\n"...)
	}
	for _, c := range counts {
		if asJSON {
			b = append(b, `{"family":"`...)
			b = append(b, c.Family.String()...)
			b = append(b, `","saddr":"`...)
			b = c.Saddr.AppendTo(b)
			b = append(b, `","daddr":"`...)
			b = c.Daddr.AppendTo(b)
			b = append(b, `","dport":`...)
			b = strconv.AppendUint(b, uint64(c.Dport), 10)
			b = append(b, `,"connects":`...)
			b = strconv.AppendUint(b, c.Connects, 10)
			b = append(b, "}\n"...)
			continue
		}
		s := len(b)
		b = c.Saddr.AppendTo(b)
		b = col(b, s, width+1)
		s = len(b)
		b = c.Daddr.AppendTo(b)
		b = col(b, s, width+1)
		s = len(b)
		b = strconv.AppendUint(b, uint64(c.Dport), 10)
		b = col(b, s, 7)
		b = strconv.AppendUint(b, c.Connects, 10)
		b = append(b, '\n')
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}
