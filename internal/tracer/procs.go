// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// Bounds of what the kernel keeps of a process (bpf/tcpconnect.h).
const (
	// ExeMax is the longest executable path kept whole, in bytes (EXE_MAX
	// less room for one more name); a longer one starts with ".../".
	ExeMax = exeBuf - exeNameMax
	// ArgsMax is how many bytes of the command line are kept (the
	// arguments with a NUL after each).
	ArgsMax = argsMax

	exeBuf     = 1024
	exeNameMax = 256
	argsMax    = 2048
)

// Flags of struct proc (enum proc_flag, generated).
const (
	procExeMatch   = uint8(tcpconnectProcFlagPROC_EXE_MATCH)
	procExeCut     = uint8(tcpconnectProcFlagPROC_EXE_CUT)
	procFromProcfs = uint8(tcpconnectProcFlagPROC_FROM_PROCFS)
	procNoExe      = uint8(tcpconnectProcFlagPROC_NO_EXE)
	procNoArgs     = uint8(tcpconnectProcFlagPROC_NO_ARGS)
)

// procObjects are the programs that follow execs, forks and exits.
type procObjects struct {
	Exec *ebpf.Program `ebpf:"tcpconnect_exec"`
	Fork *ebpf.Program `ebpf:"tcpconnect_fork"`
	Exit *ebpf.Program `ebpf:"tcpconnect_exit"`
	// ProcScratch is only used by Exec.
	ProcScratch *ebpf.Map `ebpf:"proc_scratch"`
}

// attachProcs loads and attaches the exec, fork and exit programs on the
// procs map (and ring buffer and stats) of l. tp_btf needs no tracefs
// and is on every kernel of the floor.
func (l *loaded) attachProcs(spec *ebpf.CollectionSpec) error {
	var o procObjects
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"procs":  l.shared.Procs,
		"events": l.shared.Events,
		"stats":  l.shared.Stats,
	}}
	if err := spec.LoadAndAssign(&o, opts); err != nil {
		return fmt.Errorf("loading the exec programs: %w", err)
	}
	l.closers = append(l.closers, o.Exec, o.Fork, o.Exit, o.ProcScratch)
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"sched_process_fork", o.Fork}, {"sched_process_exec", o.Exec}, {"sched_process_exit", o.Exit}} {
		lk, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err := l.attach("tp_btf/"+p.name, lk, err); err != nil {
			return err
		}
	}
	return nil
}

// exeComponents encodes path as struct proc's exe: its components from
// the leaf up, each followed by a NUL. ok is false for a path that the
// kernel would not keep whole, or that is not absolute and clean.
func exeComponents(path string) (enc []byte, ok bool) {
	if !strings.HasPrefix(path, "/") || filepath.Clean(path) != path || strings.ContainsRune(path, 0) {
		return nil, false
	}
	parts := strings.Split(path[1:], "/")
	if path == "/" {
		parts = nil
	}
	for i := len(parts) - 1; i >= 0; i-- {
		enc = append(enc, parts[i]...)
		enc = append(enc, 0)
	}
	return enc, len(enc) <= ExeMax && len(parts) <= pathDepth
}

// pathDepth is how many levels (names and mount crossings) a path the
// kernel keeps whole may have: its walk takes PATH_DEPTH steps, and the
// last one is needed to find the root.
const pathDepth = int(tcpconnectLimitsPATH_DEPTH) - 1

// exePath decodes struct proc's exe.
func exePath(enc []byte, flags uint8) string {
	if flags&procNoExe != 0 {
		return ""
	}
	var b strings.Builder
	if flags&procExeCut != 0 {
		b.WriteString("...")
	}
	parts := bytes.Split(bytes.TrimSuffix(enc, []byte{0}), []byte{0})
	if len(enc) == 0 {
		parts = nil
	}
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.Write(parts[i])
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// splitArgs splits a command line (NUL after each argument) of which
// size bytes were kept out of total.
func splitArgs(raw []byte, total int) (args []string, cut bool) {
	cut = total > len(raw)
	s := string(raw)
	if !cut {
		s = strings.TrimSuffix(s, "\x00")
	}
	if s == "" && !cut {
		return []string{}, false
	}
	return strings.Split(s, "\x00"), cut
}

// procCache holds the processes that the kernel sent, by PID, each with
// the exec it describes. Bounded in entries and in bytes: when either
// bound is reached, the oldest half goes (the kernel's map is the
// fallback for what was dropped). The bytes bound matters: any user can
// run many processes with a command line of 2048 empty arguments, each
// then 2049 strings (~33 KB); at the entry bound alone that is gigabytes.
type procCache struct {
	entries  map[uint32]cachedProc
	order    []uint32 // pids, oldest first
	max      int
	maxBytes int
	bytes    int // sum of the entries' costs
}

// cachedProc is a process of the cache, the exec it describes, and what
// it holds in memory (procCost).
type cachedProc struct {
	p      *event.Process
	execID uint64
	cost   int
}

// procCacheBytes bounds the memory of a procCache: the DaemonSet runs in
// 256 MiB.
const procCacheBytes = 32 << 20

func newProcCache(max, maxBytes int) *procCache {
	return &procCache{entries: map[uint32]cachedProc{}, max: max, maxBytes: maxBytes}
}

// procCost estimates what p holds in memory: its strings, a string
// header per argument, and the maps' share.
func procCost(p *event.Process) int {
	const entry = 128
	if p == nil {
		return entry
	}
	n := entry + len(p.Exe) + len(p.ParentComm) + len(p.ParentExe) + 16*len(p.Args)
	for _, a := range p.Args {
		n += len(a)
	}
	return n
}

func (c *procCache) put(pid uint32, execID uint64, p *event.Process) {
	e := cachedProc{p: p, execID: execID, cost: procCost(p)}
	if old, ok := c.entries[pid]; ok {
		// Now the newest: eviction must not take what was just put.
		c.bytes -= old.cost
		c.order = slices.DeleteFunc(c.order, func(q uint32) bool { return q == pid })
	}
	c.order = append(c.order, pid)
	c.entries[pid] = e
	c.bytes += e.cost
	for len(c.order) > 1 && (len(c.order) > c.max || c.bytes > c.maxBytes) {
		drop := c.order[:len(c.order)/2]
		for _, old := range drop {
			c.bytes -= c.entries[old].cost
			delete(c.entries, old)
		}
		c.order = append(c.order[:0], c.order[len(drop):]...)
	}
}

func (c *procCache) get(pid uint32, execID uint64) *event.Process {
	e, ok := c.entries[pid]
	if !ok || e.execID != execID {
		return nil
	}
	return e.p
}

// procFromKernel turns a struct proc into a Process.
func procFromKernel(p *tcpconnectProc) *event.Process {
	exeLen := min(int(p.ExeLen), len(p.Exe))
	argsSize := min(int(p.ArgsSize), len(p.Args))
	args, cut := splitArgs(p.Args[:argsSize], int(p.ArgsLen))
	if p.Flags&procNoArgs != 0 {
		args, cut = nil, false
	}
	return &event.Process{
		Exe:        exePath(p.Exe[:exeLen], p.Flags),
		Args:       args,
		ArgsCut:    cut,
		ArgsLen:    int(p.ArgsLen),
		FromProcfs: p.Flags&procFromProcfs != 0,
	}
}

// decodeProcRecord reads a struct proc_record into the cache.
func (t *Tracer) decodeProcRecord(raw []byte) error {
	if len(raw) < int(unsafe.Sizeof(tcpconnectProcRecord{})) {
		return fmt.Errorf("short process record: %d bytes, want %d", len(raw), unsafe.Sizeof(tcpconnectProcRecord{}))
	}
	r := (*tcpconnectProcRecord)(unsafe.Pointer(unsafe.SliceData(raw)))
	p := procFromKernel(&r.Proc)
	p.ParentComm = string(bytes.TrimRight(r.ParentComm[:], "\x00"))
	if n := min(int(r.ParentExeLen), len(r.ParentExe)); n > 0 {
		p.ParentExe = exePath(r.ParentExe[:n], r.ParentFlags)
	}
	t.procs.put(r.Pid, r.Proc.ExecId, p)
	return nil
}

// resolveProc sets e.Proc from the records the kernel sent or, failing
// that, from the kernel's map while the process lives.
func (t *Tracer) resolveProc(e *event.Event) {
	if e.ExecID == 0 || t.procs == nil {
		return
	}
	if p := t.procs.get(e.PID, e.ExecID); p != nil {
		e.Proc = p
		return
	}
	var kp tcpconnectProc
	if err := t.objs.shared.Procs.Lookup(e.PID, &kp); err != nil || kp.ExecId != e.ExecID {
		return
	}
	p := procFromKernel(&kp)
	t.procs.put(e.PID, e.ExecID, p)
	e.Proc = p
}

// fillFromProcfs enters every process that runs now into the kernel's
// map, from /proc, unless the kernel has seen it exec or fork meanwhile
// (the programs are attached first, so nothing falls between). The path
// is made relative to the process's root, as the kernel's walk does.
func fillFromProcfs(m *ebpf.Map, exeFilter string, logf func(string, ...any)) {
	dir, err := os.Open("/proc")
	if err != nil {
		logf("reading /proc: %v", err)
		return
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		logf("reading /proc: %v", err)
		return
	}
	var seq uint64
	filled := 0
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue
		}
		// A pidfd pins the process whose /proc we read: if it exits
		// at any point before its entry is in, the PID may already be
		// another process's (forked by a parent we have not filled in,
		// so the fork hook made it no entry), which must not get the
		// gone one's exe and arguments.
		pidfd, err := unix.PidfdOpen(int(pid), 0)
		switch {
		case errors.Is(err, unix.ESRCH):
			continue // gone already
		case err != nil:
			pidfd = -1 // no pidfds here (seccomp, gVisor): as before them
		}
		var p tcpconnectProc
		if !readProcfs(uint32(pid), exeFilter, &p) {
			closePidfd(pidfd)
			continue
		}
		seq++
		p.ExecId = 1<<63 | seq
		err = m.Update(uint32(pid), &p, ebpf.UpdateNoExist)
		switch {
		case err == nil && exited(pidfd):
			var now tcpconnectProc
			if m.Lookup(uint32(pid), &now) == nil && now.ExecId == p.ExecId {
				_ = m.Delete(uint32(pid))
			}
		case err == nil:
			filled++
		case !errors.Is(err, ebpf.ErrKeyExist):
			logf("remembering process %d: %v", pid, err)
		}
		closePidfd(pidfd)
	}
	logf("processes read from /proc: %d", filled)
}

// exited says whether the process of pidfd has exited: its pidfd is
// then readable. Without a pidfd (-1) it cannot tell: false.
func exited(pidfd int) bool {
	if pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

func closePidfd(pidfd int) {
	if pidfd >= 0 {
		unix.Close(pidfd)
	}
}

// readProcfs fills p from /proc/PID; false for a kernel thread or a
// process that is gone.
func readProcfs(pid uint32, exeFilter string, p *tcpconnectProc) bool {
	base := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	exe, err := os.Readlink(base + "/exe")
	if err != nil {
		return false
	}
	if root, err := os.Readlink(base + "/root"); err == nil && root != "/" {
		if rest, ok := strings.CutPrefix(exe, root+"/"); ok {
			exe = "/" + rest
		}
	}
	p.Flags = procFromProcfs
	enc, ok := exeComponents(exe)
	if !ok {
		// Longer than the kernel keeps (or odd, like "... (deleted)"
		// of an unlinked file whose name had a slash): keep the leaf
		// end, as the kernel would.
		p.Flags |= procExeCut
		if len(enc) > ExeMax {
			enc = enc[:ExeMax]
			if i := bytes.LastIndexByte(enc, 0); i >= 0 {
				enc = enc[:i+1]
			}
		}
	}
	p.ExeLen = uint16(copy(p.Exe[:], enc))
	if ok && exe == exeFilter {
		p.Flags |= procExeMatch
	}
	f, err := os.Open(base + "/cmdline")
	if err != nil {
		p.Flags |= procNoArgs
		return true
	}
	defer f.Close()
	n, _ := io.ReadFull(f, p.Args[:])
	p.ArgsSize = uint16(n)
	total := n
	if n == len(p.Args) {
		rest, _ := io.Copy(io.Discard, io.LimitReader(f, 1<<30))
		total += int(rest)
	}
	p.ArgsLen = uint32(total)
	return true
}
