// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/cgroups"
	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a child process when a test needs
// a connect from another PID, UID or process name: env childEnv carries
// what the child must do.
const childEnv = "TCPCONNECT_TEST_CHILD"

// ChildOptions say how the child connects.
type ChildOptions struct {
	// Comm, if set, becomes the child's thread name (prctl PR_SET_NAME)
	// before it connects: lets tests use hostile names.
	Comm string
	// UID, if non-zero, is the user the child runs as.
	UID uint32
	// Cgroup, if set, is a cgroup v2 directory the child moves itself
	// into before it connects.
	Cgroup string
	// NewPIDNS starts the child in a new PID namespace (it is PID 1 there).
	NewPIDNS bool
}

// ChildResult is the ground truth of the child's connect.
type ChildResult struct {
	// PID and TID as the child saw them (in its own PID namespace);
	// HostPID as this process sees it.
	PID, TID, HostPID int
	Sport             uint16
	Err               unix.Errno // connect()'s error, 0 on success
}

// RunChildIfRequested must be called first in TestMain: in a child it
// connects as asked and exits.
func RunChildIfRequested() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	childPrelude()
	os.Exit(childConnect(spec))
}

func childConnect(spec string) int {
	// prctl names one thread: connect from that same thread.
	runtime.LockOSThread()
	// spec: "ADDR:PORT|COMM|CGROUP"
	parts := strings.SplitN(spec, "|", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	addr, comm, cgroup := parts[0], parts[1], parts[2]
	if cgroup != "" {
		procs := cgroup + "/cgroup.procs"
		if err := os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if comm != "" {
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafeBytePtr(comm)), 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
	}
	// The prctl above named this thread; connect on it.
	sport, errno := connectRaw(ap)
	fmt.Printf("%d %d %d %d\n", os.Getpid(), unix.Gettid(), sport, int(errno))
	return 0
}

// ConnectFromChild runs a child that connects to addr and returns what it
// did. It does not fail on a refused connect: the result carries Err.
func ConnectFromChild(t testing.TB, addr netip.AddrPort, opts ChildOptions) ChildResult {
	t.Helper()
	bin := os.Args[0]
	if opts.UID != 0 {
		bin = worldExecutable(t)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr.String()+"|"+opts.Comm+"|"+opts.Cgroup)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if opts.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: opts.UID, Gid: opts.UID}
	}
	if opts.NewPIDNS {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child connect to %v: %v (%s)", addr, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		t.Fatalf("child said %q", out)
	}
	var r ChildResult
	r.HostPID = cmd.Process.Pid
	r.PID, _ = strconv.Atoi(f[0])
	r.TID, _ = strconv.Atoi(f[1])
	sport, _ := strconv.Atoi(f[2])
	r.Sport = uint16(sport)
	e, _ := strconv.Atoi(f[3])
	r.Err = unix.Errno(e)
	return r
}

// ConnectRaw makes one blocking connect() on the calling OS thread (lock
// it first when the TID matters) and returns the source port the socket
// had (0 when the kernel released it after a failure) and connect()'s
// error.
func ConnectRaw(ap netip.AddrPort) (sport uint16, err unix.Errno) {
	return connectRaw(ap)
}

func connectRaw(ap netip.AddrPort) (uint16, unix.Errno) {
	fam := unix.AF_INET
	if ap.Addr().Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err.(unix.Errno)
	}
	defer unix.Close(fd)
	cerr := unix.Connect(fd, Sockaddr(ap))
	var sport uint16
	if sa, err := unix.Getsockname(fd); err == nil {
		sport = SockPort(sa)
	}
	if cerr != nil {
		return sport, cerr.(unix.Errno)
	}
	return sport, 0
}

// Sockaddr converts ap for the unix package; an IPv4-mapped address stays
// IPv6 (an IPv6 socket dialling ::ffff:a.b.c.d).
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// ThreadComm returns the kernel's name of thread tid of this process.
func ThreadComm(t testing.TB, tid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/comm", tid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

var (
	copyOnce sync.Once
	copyPath string
	copyErr  error
)

// WorldExecutable returns a copy of the test binary that another user
// can run (the test's own children: see RunChildIfRequested).
func WorldExecutable(t testing.TB) string { return worldExecutable(t) }

// worldExecutable returns a copy of the test binary that another user
// can run: go test builds it in a folder only root may enter.
func worldExecutable(t testing.TB) string {
	t.Helper()
	copyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcpconnect-child")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		var data []byte
		if err == nil {
			data, err = os.ReadFile(os.Args[0])
		}
		if err == nil {
			copyPath = filepath.Join(dir, filepath.Base(os.Args[0]))
			err = os.WriteFile(copyPath, data, 0o755)
		}
		copyErr = err
	})
	if copyErr != nil {
		t.Fatalf("copying the test binary for another user: %v", copyErr)
	}
	return copyPath
}

// MakeCgroup creates rel (e.g. "system.slice/docker-<id>.scope") under a
// cgroup v2 folder of the test's own and returns its full path; cleanup
// removes what it made.
func MakeCgroup(t testing.TB, rel string) string {
	t.Helper()
	root := cgroups.Mount()
	if root == "" {
		t.Fatal("no cgroup v2 mount")
	}
	base, err := os.MkdirTemp(root, "tcpconnect-test-")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// cgroup directories go with rmdir only, leaves first.
		for p := dir; p != root && strings.HasPrefix(p, base); p = filepath.Dir(p) {
			os.Remove(p)
		}
	})
	return dir
}

// Listen opens a TCP listener on addr (in ns, or here when ns is nil)
// that accepts every connection and closes it at once, until the test
// ends. network is "tcp", "tcp4" or "tcp6".
func Listen(t testing.TB, ns *NetNS, network, addr string) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	listen := func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	}
	var err error
	if ns != nil {
		err = ns.Do(listen)
	} else {
		err = listen()
	}
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go AcceptAndClose(ln)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// AcceptAndClose accepts connections on ln and closes each at once, until
// ln is closed: a peer for connects that must be established.
func AcceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// SockPort is the port of a socket address from unix.Getsockname.
func SockPort(sa unix.Sockaddr) uint16 {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(sa.Port)
	case *unix.SockaddrInet6:
		return uint16(sa.Port)
	}
	return 0
}
