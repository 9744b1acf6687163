// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.RunChildIfRequested()
	runDNSChildIfRequested()
	os.Exit(m.Run())
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the command once per test run, or takes the one named by
// TCPCONNECT_TEST_BINARY (the multi-kernel runner has no Go toolchain in
// its guests).
func binary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TCPCONNECT_TEST_BINARY"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcpconnect-e2e")
		if err != nil {
			buildErr = err
			return
		}
		// Others may run it: TestNotRoot runs it as nobody.
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tcpconnect")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running tcpconnect.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	progs  []uint32
	links  []uint32
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// backendArgs are -v and, when TCPCONNECT_TEST_BACKEND is set, the
// --backend that the multi-kernel runner forces.
func backendArgs() []string {
	args := []string{"-v"}
	if b := os.Getenv("TCPCONNECT_TEST_BACKEND"); b != "" {
		args = append(args, "--backend", b)
	}
	return args
}

var idsRE = regexp.MustCompile(`program IDs \[([0-9 ]*)\], link IDs \[([0-9 ]*)\]`)

// startTool runs the binary with -v and args and waits until it says it
// is tracing.
func startTool(t *testing.T, args ...string) *proc {
	t.Helper()
	return startToolWith(t, nil, args...)
}

// startToolWith is startTool with start, if set, in charge of starting
// the command (from a thread with namespaces or capabilities of its own).
func startToolWith(t *testing.T, start func(*exec.Cmd) error, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), append(backendArgs(), args...)...)
	if start == nil {
		start = (*exec.Cmd).Start
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 1024), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			p.lines <- s.Text()
		}
		close(p.lines)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "Hit Ctrl-C to end.") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpconnect did not start: %s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := idsRE.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no program IDs in -v output: %s", p.stderr.String())
	}
	p.progs, p.links = parseIDs(m[1]), parseIDs(m[2])
	if len(p.progs) == 0 || len(p.links) == 0 {
		t.Fatalf("nothing attached? %s", p.stderr.String())
	}
	return p
}

func parseIDs(s string) []uint32 {
	var ids []uint32
	for _, f := range strings.Fields(s) {
		n, _ := strconv.ParseUint(f, 10, 32)
		ids = append(ids, uint32(n))
	}
	return ids
}

// waitLine returns the first output line containing all of want.
func (p *proc) waitLine(t *testing.T, want ...string) string {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("output ended before a line with %q; stderr: %s", want, p.stderr.String())
			}
			match := true
			for _, w := range want {
				match = match && strings.Contains(l, w)
			}
			if match {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q; stderr: %s", want, p.stderr.String())
		}
	}
}

// stop signals the tool and checks it exits 0 and leaves nothing in the
// kernel.
func (p *proc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	// The tool may be on its way out already (a test signalled it first).
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tcpconnect exited with %v after %v; stderr: %s", err, sig, p.stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("tcpconnect did not exit after %v", sig)
	}
	p.checkDetached(t)
}

func (p *proc) checkDetached(t *testing.T) {
	t.Helper()
	// A program attached through a raw tracepoint link (tp_btf: the exec,
	// fork and exit hooks) is put only after an RCU grace period that
	// follows its link's release on recent kernels (seen on this 6.18 host),
	// so its ID may outlive the process by a moment: wait for it, bounded.
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range p.progs {
		for {
			prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				break
			}
			prog.Close()
			if time.Now().After(deadline) {
				t.Errorf("program %d still loaded after exit", id)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, id := range p.links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			t.Errorf("link %d still attached after exit", id)
		}
	}
}

func listener(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	return testutil.Listen(t, nil, "tcp", addr)
}

func TestTableEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	p := startTool(t, "-U", "-P", strconv.Itoa(int(ap.Port())))
	header := p.waitLine(t, "PID", "COMM", "SADDR", "SPORT", "DADDR", "DPORT")
	if !strings.HasPrefix(header, "TIME     UID    PID") {
		t.Errorf("header %q", header)
	}
	sport, errno := testutil.ConnectRaw(ap)
	if errno != 0 {
		t.Fatal(errno)
	}
	line := p.waitLine(t, " "+strconv.Itoa(int(sport))+" ")
	f := strings.Fields(line)
	want := []string{"0", strconv.Itoa(os.Getpid()), "", "127.0.0.1", strconv.Itoa(int(sport)), "127.0.0.1", strconv.Itoa(int(ap.Port()))}
	if len(f) != 8 {
		t.Fatalf("line %q", line)
	}
	for i, w := range want {
		if w != "" && f[i+1] != w {
			t.Errorf("column %d of %q is %q, want %q", i+1, line, f[i+1], w)
		}
	}
	if _, err := time.Parse(time.TimeOnly, f[0]); err != nil {
		t.Errorf("TIME %q: %v", f[0], err)
	}
	p.stop(t, syscall.SIGINT)
	if !strings.Contains(p.stderr.String(), "events printed, 0 lost") {
		t.Errorf("no loss summary at exit: %s", p.stderr.String())
	}
}

func TestJSONEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "[::1]:0")
	p := startTool(t, "--json", "-6")
	sport, errno := testutil.ConnectRaw(ap)
	if errno != 0 {
		t.Fatal(errno)
	}
	line := p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport))
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	for k, v := range map[string]any{
		"pid": float64(os.Getpid()), "uid": 0.0, "family": "ipv6", "saddr": "::1", "daddr": "::1",
		"sport": float64(sport), "dport": float64(ap.Port()),
	} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, m[k], v, line)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if m["backend"] == "" || m["tid"] == nil || m["comm"] == "" {
		t.Errorf("missing keys in %s", line)
	}
	p.stop(t, syscall.SIGTERM)
}

func TestHostileCommIsEscaped(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"-P", strconv.Itoa(int(ap.Port()))}
			if format == "json" {
				args = append(args, "--json")
			}
			p := startTool(t, args...)
			child := testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Comm: "\x1b[31mev\nil\a"})
			line := p.waitLine(t, strconv.Itoa(child.PID))
			if strings.ContainsAny(line, "\x1b\a") {
				t.Errorf("raw control characters in %q", line)
			}
			want := `\x1b[31mev\x0ail\x07`
			if format == "json" {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatal(err)
				}
				if m["comm"] != want {
					t.Errorf("comm %q, want %q", m["comm"], want)
				}
			} else if !strings.Contains(line, want) {
				t.Errorf("line %q lacks %q", line, want)
			}
			p.stop(t, syscall.SIGINT)
		})
	}
}

// TestClosedStdout: `tcpconnect | head -1` ends cleanly once head exits.
func TestClosedStdout(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	cmd := exec.Command(binary(t), append(backendArgs(), "-P", strconv.Itoa(int(ap.Port())))...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	m := idsRE.FindStringSubmatch(waitStderr(t, stderr, "Hit Ctrl-C"))
	// Like head -1: read one line (the header), then close the pipe.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "DPORT") {
		t.Fatalf("first line %q: %v", line, err)
	}
	stdout.Close()
	testutil.ConnectRaw(ap) // an event to write into the closed pipe
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Errorf("exit after closed stdout: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tcpconnect kept running after its stdout closed")
	}
	p := &proc{progs: parseIDs(m[1]), links: parseIDs(m[2])}
	p.checkDetached(t)
}

func waitStderr(t *testing.T, b *syncBuffer, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stderr: %s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b.String()
}

// TestNotRoot: without privileges, one line naming what is missing.
func TestNotRoot(t *testing.T) {
	testutil.RequirePrivileged(t) // to switch to another user
	cmd := exec.Command(binary(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("as nobody: %v, want exit 1; output %q", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "CAP_BPF") {
		t.Errorf("as nobody: %q, want one line naming CAP_BPF", out)
	}
}

// TestResultsEndToEnd: -r prints each attempt once its outcome is known,
// and an attempt still waiting at Ctrl-C as pending.
func TestResultsEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	open := listener(t, "127.0.0.1:0")
	refused := refusingPort(t)
	ns := testutil.NewNetNS(t)
	if _, err := ns.DropSYN(9); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"-r", "-P", fmt.Sprintf("%d,%d,9", open.Port(), refused.Port())}
			if format == "json" {
				args = append(args, "--json")
			}
			p := startTool(t, args...)
			sport, errno := testutil.ConnectRaw(open)
			if errno != 0 {
				t.Fatal(errno)
			}
			if _, errno := testutil.ConnectRaw(refused); errno != syscall.ECONNREFUSED {
				t.Fatalf("connect %v: %v", refused, errno)
			}
			// A SYN that nobody answers, from inside the namespace (its
			// lo drops SYNs to port 9): still pending at Ctrl-C.
			var fd int
			if err := ns.Do(func() error {
				var err error
				fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
				if err != nil {
					return err
				}
				err = syscall.Connect(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 9})
				if err != syscall.EINPROGRESS {
					return err
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)

			if format == "table" {
				p.waitLine(t, "LAT(ms)", "RESULT")
				est := p.waitLine(t, " "+strconv.Itoa(int(sport))+" ")
				if f := strings.Fields(est); f[len(f)-1] != "established" {
					t.Errorf("established line %q", est)
				}
				ref := p.waitLine(t, strconv.Itoa(int(refused.Port())), "refused")
				if f := strings.Fields(ref); len(f) != 9 {
					t.Errorf("refused line %q", ref)
				}
			} else {
				est := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport)))
				if est["result"] != "established" || est["errno"] != nil || est["latency_us"] == nil {
					t.Errorf("established: %v", est)
				}
				ref := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"dport":%d,`, refused.Port())))
				if ref["result"] != "refused" || ref["errno"] != "ECONNREFUSED" {
					t.Errorf("refused: %v", ref)
				}
			}
			time.Sleep(50 * time.Millisecond)
			if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			pending := p.waitLine(t, "pending")
			if !strings.Contains(pending, "127.0.0.1") || !strings.Contains(pending, "9") {
				t.Errorf("pending line %q", pending)
			}
			p.stop(t, syscall.SIGINT)
		})
	}
}

func decodeJSON(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return m
}

// TestCountEndToEnd: -c counts exactly, prints sorted at Ctrl-C.
func TestCountEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	a, b := listener(t, "127.0.0.1:0"), listener(t, "[::1]:0")
	p := startTool(t, "-c", "-P", fmt.Sprintf("%d,%d", a.Port(), b.Port()))
	for range 5 {
		testutil.ConnectRaw(a)
	}
	for range 3 {
		testutil.ConnectRaw(b)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	header := p.waitLine(t, "SADDR", "CONNECTS")
	first := strings.Fields(p.waitLine(t, "127.0.0.1"))
	second := strings.Fields(p.waitLine(t, "::1"))
	if len(first) != 4 || first[2] != strconv.Itoa(int(a.Port())) || first[3] != "5" ||
		len(second) != 4 || second[3] != "3" {
		t.Errorf("counts:\n%s\n%v\n%v", header, first, second)
	}
	p.stop(t, syscall.SIGINT)
}

// TestContainerEndToEnd: a child in a cgroup named like a docker scope
// shows its container in the CONTAINER column and the JSON keys, and
// --container=PREFIX keeps only it.
func TestContainerEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	const id = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
	dir := testutil.MakeCgroup(t, filepath.Join("system.slice", "docker-"+id+".scope"))
	ap := listener(t, "127.0.0.1:0")

	p := startTool(t, "--container", "-x", "-P", strconv.Itoa(int(ap.Port())))
	child := testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Cgroup: dir})
	line := p.waitLine(t, " "+strconv.Itoa(child.PID)+" ")
	if !strings.Contains(line, " "+id[:12]+" ") || !strings.HasSuffix(line, "/system.slice/docker-"+id+".scope") {
		t.Errorf("container line %q", line)
	}
	sport, _ := testutil.ConnectRaw(ap)
	own := p.waitLine(t, " "+strconv.Itoa(int(sport))+" ")
	if f := strings.Fields(own); f[4] != "-" {
		t.Errorf("host line %q: CONTAINER should be -", own)
	}
	p.stop(t, syscall.SIGINT)

	p = startTool(t, "--json", "--container="+id[:8], "-P", strconv.Itoa(int(ap.Port())))
	testutil.ConnectRaw(ap) // excluded: not in the container
	child = testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Cgroup: dir})
	m := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, child.Sport)))
	if m["container_id"] != id || !strings.HasSuffix(m["cgroup_path"].(string), "/system.slice/docker-"+id+".scope") ||
		m["pid"] != float64(child.PID) || m["ppid"] != float64(os.Getpid()) {
		t.Errorf("container event %v", m)
	}
	p.stop(t, syscall.SIGINT)
	if !strings.Contains(p.stderr.String(), "1 events printed") {
		t.Errorf("--container let other attempts through: %s", p.stderr.String())
	}
}

// TestMountsWhatItNeeds: on a host that mounts neither tracefs nor the
// cgroup v2 hierarchy (as these project machines at boot), the tool
// mounts them for itself only: afterwards nothing is left mounted.
func TestMountsWhatItNeeds(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("SKIP: no unshare(1) to make a mount namespace for the test")
	}
	ap := listener(t, "127.0.0.1:0")
	// The script tells the test through files when the tool is attached,
	// and stops it once the test has connected: no sleeps to guess.
	dir := t.TempDir()
	ready, done, errFile := filepath.Join(dir, "ready"), filepath.Join(dir, "done"), filepath.Join(dir, "stderr")
	script := `
		umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug/tracing 2>/dev/null
		for m in $(awk '$9 == "cgroup2" {print $5}' /proc/self/mountinfo); do umount -l "$m"; done
		grep -cE ' - (tracefs|cgroup2) ' /proc/self/mountinfo
		"$BIN" "$@" 2>"$ERR" &
		pid=$!
		until grep -q 'Hit Ctrl-C' "$ERR" 2>/dev/null; do sleep 0.1; done
		touch "$READY"
		until [ -e "$DONE" ]; do sleep 0.1; done
		kill -INT $pid
		wait $pid; rc=$?
		cat "$ERR" >&2
		grep -cE ' - (tracefs|cgroup2) ' /proc/self/mountinfo
		exit $rc`
	args := append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh"}, backendArgs()...)
	args = append(args, "-d", "-P", strconv.Itoa(int(ap.Port())))
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "BIN="+binary(t), "READY="+ready, "DONE="+done, "ERR="+errFile)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(errFile)
			t.Fatalf("tcpconnect did not attach in a namespace without tracefs and cgroup2:\n%s", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sport, _ := testutil.ConnectRaw(ap)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tcpconnect in a namespace without tracefs and cgroup2: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 3 || lines[0] != "0" || lines[len(lines)-1] != "0" {
		t.Errorf("mounts before/after (want 0 and 0), output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), " "+strconv.Itoa(int(sport))+" ") {
		t.Errorf("connect from port %d not traced:\n%s\n%s", sport, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "for this process only") {
		t.Errorf("-v does not say what it mounted:\n%s", errb.String())
	}
}

// TestWhyEndToEnd: -w through the binary, in a namespace of the test: a
// DNAT rule of its OUTPUT path (the real destination) and an OUTPUT drop
// (the drop reason and the retransmission).
func TestWhyEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	ns := testutil.NewNetNS(t)
	real := testutil.Listen(t, ns, "tcp", "127.0.0.1:0")
	virt := netip.MustParseAddrPort("127.0.0.2:80")
	if _, err := ns.DNAT(virt, real); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.DropOutputSYN(9); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]string{"net.ipv4.tcp_syn_retries": "1", "net.ipv4.tcp_syn_linear_timeouts": "0"} {
		if err := ns.Sysctl(key, v); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	dropped := netip.MustParseAddrPort("127.0.0.1:9")
	connect := func(ap netip.AddrPort) (sport uint16, errno syscall.Errno) {
		if err := ns.Do(func() error {
			sport, errno = testutil.ConnectRaw(ap)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return sport, errno
	}
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"-w", "--netns", strconv.FormatUint(ns.Inode(), 10)}
			if format == "json" {
				args = append(args, "--json")
			}
			p := startTool(t, args...)
			natSport, errno := connect(virt)
			if errno != 0 {
				t.Fatalf("connect %v: %v", virt, errno)
			}
			dropSport, errno := connect(dropped)
			if errno != syscall.ETIMEDOUT {
				t.Fatalf("connect %v: %v", dropped, errno)
			}
			if format == "table" {
				p.waitLine(t, "RESULT", "REALDEST", "RETX", "WHY")
				nat := strings.Fields(p.waitLine(t, " "+strconv.Itoa(int(natSport))+" "))
				// ... DADDR DPORT LAT(ms) RESULT REALDEST RETX WHY
				n := len(nat)
				if want := []string{"established", real.String(), "0", "-"}; n < 7 || nat[n-7] != "127.0.0.2" || nat[n-6] != "80" ||
					!slices.Equal(nat[n-4:], want) {
					t.Errorf("NAT line %q, want 127.0.0.2 80 LAT %q", nat, want)
				}
				drop := strings.Fields(p.waitLine(t, " "+strconv.Itoa(int(dropSport))+" "))
				if want := []string{"timeout", "-", "1", "drop:NETFILTER_DROP"}; !slices.Equal(drop[len(drop)-4:], want) {
					t.Errorf("drop line %q, want it to end in %q", drop, want)
				}
			} else {
				nat := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, natSport)))
				if nat["daddr"] != "127.0.0.2" || nat["dport"] != 80.0 || nat["result"] != "established" ||
					nat["nat_daddr"] != "127.0.0.1" || nat["nat_dport"] != float64(real.Port()) ||
					nat["syn_retransmits"] != 0.0 || nat["drop_reason"] != nil || nat["icmp_from"] != nil {
					t.Errorf("NAT record %v", nat)
				}
				drop := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, dropSport)))
				if drop["result"] != "timeout" || drop["nat_daddr"] != nil || drop["nat_dport"] != nil ||
					drop["syn_retransmits"] != 1.0 || drop["drop_reason"] != "NETFILTER_DROP" ||
					drop["icmp_type"] != nil || drop["icmp_code"] != nil || drop["icmp_from"] != nil {
					t.Errorf("drop record %v", drop)
				}
			}
			p.stop(t, syscall.SIGINT)
		})
	}
}

// TestSIGHUPEndsCleanly: SIGHUP (a closed terminal) ends the run as
// SIGTERM does: exit 0, the exit line, nothing left attached.
func TestSIGHUPEndsCleanly(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	p := startTool(t, "--json", "-P", strconv.Itoa(int(ap.Port())))
	sport, errno := testutil.ConnectRaw(ap)
	if errno != 0 {
		t.Fatal(errno)
	}
	p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport))
	p.stop(t, syscall.SIGHUP)
	if !strings.Contains(p.stderr.String(), "tcpconnect: 1 events printed, 0 lost") {
		t.Errorf("no exit line after SIGHUP: %s", p.stderr.String())
	}
}
