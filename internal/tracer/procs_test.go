// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/sys/unix"
)

// hostileDir returns a fresh directory whose path has spaces, non-ASCII
// letters, an invalid UTF-8 byte, an escape sequence and a newline.
func hostileDir(t *testing.T) string {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "dir with spaces", "ünïcödé\xff\x1b[31m\nred")
}

// hostileArgv has escape sequences, newlines, invalid UTF-8, an empty
// argument, quotes, and 10 KiB in all.
func hostileArgv() []string {
	return []string{"\x1b]0;pwned\x07argv0", "line1\nline2", "tab\there", "\xff\xfe", "", `quote"back\slash`,
		strings.Repeat("A", 10*1024)}
}

// wantArgs is what the kernel keeps of argv: ArgsMax bytes of the
// command line (a NUL after each argument).
func wantArgs(argv []string) (args []string, cut bool, total int) {
	full := strings.Join(argv, "\x00") + "\x00"
	if len(full) <= ArgsMax {
		return argv, false, len(full)
	}
	return strings.Split(full[:ArgsMax], "\x00"), true, len(full)
}

func checkProc(t *testing.T, e event.Event, exe string, argv []string) {
	t.Helper()
	p := e.Proc
	if p == nil {
		t.Fatalf("event of pid %d (exec id %#x) has no process", e.PID, e.ExecID)
	}
	if p.Exe != exe {
		t.Errorf("exe %q, want %q", p.Exe, exe)
	}
	args, cut, total := wantArgs(argv)
	if !slices.Equal(p.Args, args) || p.ArgsCut != cut || p.ArgsLen != total {
		t.Errorf("args %q (cut %v, %d bytes), want %q (cut %v, %d bytes)", p.Args, p.ArgsCut, p.ArgsLen, args, cut, total)
	}
	if want := filepath.Base(testExe(t)); p.ParentComm != want[:min(len(want), 15)] {
		t.Errorf("parent comm %q, want %q", p.ParentComm, want)
	}
	if p.ParentExe != testExe(t) {
		t.Errorf("parent exe %q, want %q", p.ParentExe, testExe(t))
	}
}

// testExe is this test binary's path as the kernel sees it.
func testExe(t *testing.T) string {
	t.Helper()
	p, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProcessHostile: a program at a hostile path, run with hostile
// arguments, that connects and exits at once: its event names that path
// and those arguments (cut at ArgsMax and marked), and its entry in the
// kernel is gone when it has exited.
func TestProcessHostile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ap := listen(t, "tcp4", "127.0.0.1:0")
		path := testutil.CopyTestBinary(t, hostileDir(t), "bin \x01ary")
		argv := hostileArgv()
		r := start(t, Config{Backend: b, Processes: true})
		for _, mode := range []Config{{}, {Outcomes: true}} {
			if mode.Outcomes {
				r.stop()
				r = start(t, Config{Backend: b, Processes: true, Outcomes: true})
			}
			ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv})
			res := ch.Result()
			e := r.wait(t, 2*time.Second, "hostile child", bySport(res.Sport, ap.Port()))
			if e.PID != uint32(ch.PID) {
				t.Errorf("pid %d, want %d", e.PID, ch.PID)
			}
			checkProc(t, e, path, argv)
			if e.Proc != nil && e.Proc.FromProcfs {
				t.Errorf("a process started after the tracer is said to come from /proc")
			}
			var kp tcpconnectProc
			if err := r.objs.shared.Procs.Lookup(uint32(ch.PID), &kp); err == nil {
				t.Errorf("the exited child's entry is still in the kernel: %+v", kp.ExecId)
			}
		}
	})
}

// TestProcessThreadRenamed: a thread that calls itself sshd still shows
// the program it runs.
func TestProcessThreadRenamed(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	res := testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Comm: "sshd"})
	e := r.wait(t, 2*time.Second, "sshd child", bySport(res.Sport, ap.Port()))
	if string(e.CommBytes()) != "sshd" {
		t.Errorf("comm %q, want sshd", e.CommBytes())
	}
	checkProc(t, e, testExe(t), []string{os.Args[0], "-test.run=^$"})

	// A thread other than the main one, of this process (older than the
	// tracer: known from /proc), renamed too.
	var d dialed
	release := make(chan struct{})
	defer close(release)
	for range 8 {
		done := make(chan bool)
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			if unix.Gettid() == os.Getpid() {
				// Keep the main thread busy so that the next try gets
				// another one.
				done <- false
				<-release
				return
			}
			if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("sshd\x00")[0])), 0, 0, 0); err == nil {
				d = dial(t, ap)
			}
			done <- true
		}()
		if <-done {
			break
		}
	}
	if d.tid == 0 {
		t.Fatal("could not connect from a renamed thread other than the main one")
	}
	e = r.wait(t, 2*time.Second, "own renamed thread", bySport(d.sport, ap.Port()))
	if e.TID == e.PID || string(e.CommBytes()) != "sshd" || e.Proc == nil || e.Proc.Exe != testExe(t) ||
		!slices.Equal(e.Proc.Args, os.Args) || !e.Proc.FromProcfs {
		t.Errorf("thread %d of %d named %q: process %+v, want exe %q args %q from /proc", e.TID, e.PID, e.CommBytes(), e.Proc, testExe(t), os.Args)
	}
}

// TestProcessBeforeTracer: a process that was running before the tracer
// started is known from /proc.
func TestProcessBeforeTracer(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	path := testutil.CopyTestBinary(t, hostileDir(t), "early")
	argv := hostileArgv()
	ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv, Wait: true})
	// Until the exec is done, /proc shows the forking test binary.
	waitExe(t, ch.PID, path)
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	ch.Go()
	res := ch.Result()
	e := r.wait(t, 2*time.Second, "early child", bySport(res.Sport, ap.Port()))
	checkProc(t, e, path, argv)
	if e.Proc != nil && !e.Proc.FromProcfs {
		t.Errorf("a process older than the tracer is not said to come from /proc")
	}
}

func waitExe(t *testing.T, pid int, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); exe == want {
			return
		}
	}
	t.Fatalf("process %d never ran %q", pid, want)
}

// TestProcessReexec: a process that execs another program shows the new
// one from then on.
func TestProcessReexec(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	path := testutil.CopyTestBinary(t, hostileDir(t), "second")
	argv := []string{"second-argv0", "x"}
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	ch := testutil.StartChild(t, ap, testutil.ExecChild{Argv: argv, Reexec: path})
	res := ch.Result()
	e := r.wait(t, 2*time.Second, "re-exec'd child", bySport(res.Sport, ap.Port()))
	if e.PID != uint32(ch.PID) {
		t.Errorf("pid %d, want %d (exec keeps the PID)", e.PID, ch.PID)
	}
	checkProc(t, e, path, argv)
}

// TestProcessMountNamespace: the path of a process with a mount
// namespace and root of its own is the path it sees, not the host's.
func TestProcessMountNamespace(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	path := testutil.CopyTestBinary(t, hostileDir(t), "contained")
	root := t.TempDir()
	argv := []string{"contained", "--flag"}
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv, Chroot: root})
	res := ch.Result()
	e := r.wait(t, 2*time.Second, "child in its own mount namespace", bySport(res.Sport, ap.Port()))
	if e.MntnsIno == inode(t, "/proc/self/ns/mnt") {
		t.Errorf("the child shares our mount namespace: the test proves nothing")
	}
	// Its parent is the same program, run from the host's root.
	if e.Proc == nil {
		t.Fatal("no process")
	}
	if e.Proc.Exe != path {
		t.Errorf("exe %q, want %q (the host sees it as %q)", e.Proc.Exe, path, root+path)
	}
	if args, _, _ := wantArgs(argv); !slices.Equal(e.Proc.Args, args) {
		t.Errorf("args %q, want %q", e.Proc.Args, args)
	}
}

// TestProcessFilters: --exe and --comm, in the kernel.
func TestProcessFilters(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	path := testutil.CopyTestBinary(t, hostileDir(t), "wanted")
	for _, tc := range []struct {
		name        string
		cfg         Config
		wanted, not testutil.ExecChild
	}{
		{"exe", Config{Exe: path}, testutil.ExecChild{Path: path}, testutil.ExecChild{}},
		{"comm", Config{Comm: "sshd"}, testutil.ExecChild{Comm: "sshd"}, testutil.ExecChild{Comm: "sshd2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backend = BackendAuto
			r := start(t, tc.cfg)
			yes := testutil.StartChild(t, ap, tc.wanted).Result()
			no := testutil.StartChild(t, ap, tc.not).Result()
			d := dial(t, ap)
			r.wait(t, 2*time.Second, "wanted child", bySport(yes.Sport, ap.Port()))
			r.none(t, 300*time.Millisecond, "other child", bySport(no.Sport, ap.Port()))
			r.none(t, 0, "own connect", bySport(d.sport, ap.Port()))
		})
	}
}

// TestProcessMemfd: a program run from a memory file (fexecve of a
// memfd, as fileless malware does) shows the kernel's name for it.
func TestProcessMemfd(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	fd, err := unix.MemfdCreate("tcpconnect-test", 0)
	if err != nil {
		t.Skipf("SKIP: no memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	defer f.Close()
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	// The child gets the memfd as fd 3 and execs it by that name.
	ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: "/proc/self/fd/3", Argv: []string{"fileless"}, ExtraFiles: []*os.File{f}})
	res := ch.Result()
	e := r.wait(t, 2*time.Second, "child run from a memfd", bySport(res.Sport, ap.Port()))
	if e.Proc == nil || e.Proc.Exe != "/memfd:tcpconnect-test" || !slices.Equal(e.Proc.Args, []string{"fileless"}) {
		t.Errorf("process %+v, want exe /memfd:tcpconnect-test", e.Proc)
	}
}

// TestProcessPathDepth: a program whose path has pathDepth levels
// (directories and mount crossings) is named whole, one level deeper is
// cut and marked; exeComponents (--exe) agrees with the kernel on both.
func TestProcessPathDepth(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listen(t, "tcp4", "127.0.0.1:0")
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Backend: BackendAuto, Processes: true})
	for _, depth := range []int{pathDepth, pathDepth + 1} {
		t.Run(strconv.Itoa(depth), func(t *testing.T) {
			dir := base
			for pathLevels(t, filepath.Join(dir, "x")) < depth {
				dir = filepath.Join(dir, "d")
			}
			path := testutil.CopyTestBinary(t, dir, "x")
			if got := pathLevels(t, path); got != depth {
				t.Fatalf("%s has %d levels, want %d", path, got, depth)
			}
			argv := []string{"x"}
			ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv})
			res := ch.Result()
			e := r.wait(t, 2*time.Second, "child", bySport(res.Sport, ap.Port()))
			if e.Proc == nil {
				t.Fatalf("event of pid %d has no process", e.PID)
			}
			if depth <= pathDepth {
				if e.Proc.Exe != path {
					t.Errorf("exe %q, want %q whole", e.Proc.Exe, path)
				}
			} else if !strings.HasPrefix(e.Proc.Exe, ".../") || !strings.HasSuffix(path, e.Proc.Exe[3:]) {
				t.Errorf("exe %q, want the end of %q, cut", e.Proc.Exe, path)
			}
			// --exe counts names only: it cannot know the mounts that
			// the process's own namespace crosses on the way.
			names := strings.Count(path, "/")
			if _, whole := exeComponents(path); whole != (names <= pathDepth) {
				t.Errorf("--exe takes %q (%d names): %v", path, names, whole)
			}
		})
	}
}

// pathLevels counts the steps of the kernel's walk up path below the
// root: one per component, and one more at each mount point crossed.
func pathLevels(t *testing.T, path string) int {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts := map[string]bool{}
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			mounts[f[4]] = true
		}
	}
	n := 0
	for p := path; p != "/"; p = filepath.Dir(p) {
		n++
		if mounts[p] {
			n++
		}
	}
	return n
}
