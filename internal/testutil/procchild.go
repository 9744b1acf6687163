// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Child modes for the tests of who made an attempt (exe, arguments):
// each is handled before the child connects, and an exec'ing mode
// removes its own variable so that the program it execs just connects.
const (
	// envWait: read one line from stdin before connecting, so that the
	// child can be started before the tracer.
	envWait = "TCPCONNECT_TEST_CHILD_WAIT"
	// envReexec=PATH: exec PATH (same arguments) before connecting.
	envReexec = "TCPCONNECT_TEST_CHILD_REEXEC"
	// envChroot=DIR: enter a new mount namespace, bind the whole tree
	// at DIR, chroot there and exec this program again: inside, every
	// path is what it was outside, but the root differs.
	envChroot = "TCPCONNECT_TEST_CHILD_CHROOT"
)

// childPrelude runs the modes above; it returns only to connect.
func childPrelude() {
	if path := os.Getenv(envReexec); path != "" {
		os.Unsetenv(envReexec)
		exitOn(syscall.Exec(path, os.Args, os.Environ()), "exec "+path)
	}
	if dir := os.Getenv(envChroot); dir != "" {
		os.Unsetenv(envChroot)
		// Mount namespaces and roots belong to the thread here (unshare
		// gives it its own fs_struct); exec from the same thread.
		runtime.LockOSThread()
		self, err := os.Readlink("/proc/self/exe")
		exitOn(err, "readlink")
		exitOn(unix.Unshare(unix.CLONE_NEWNS), "unshare")
		exitOn(unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""), "make / private")
		exitOn(unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""), "bind / at "+dir)
		exitOn(unix.Chroot(dir), "chroot")
		exitOn(unix.Chdir("/"), "chdir")
		exitOn(syscall.Exec(self, os.Args, os.Environ()), "exec "+self)
	}
	if os.Getenv(envWait) != "" {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	}
}

func exitOn(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: %s: %v\n", what, err)
		os.Exit(3)
	}
}

// ExecChild says how to start a child that connects.
type ExecChild struct {
	// Path is the program: a copy of the test binary (CopyTestBinary),
	// or "" for the test binary itself.
	Path string
	// Argv is the whole argument vector, argv[0] included; nil: Path.
	// The child ignores it: any bytes can go there.
	Argv []string
	// Wait makes the child wait until Start's Go before it connects.
	Wait bool
	// Reexec, if set, is a program the child execs first (its PID stays).
	Reexec string
	// Chroot, if set, is an empty directory: the child takes a mount
	// namespace and root of its own there before it connects.
	Chroot string
	Comm   string // as ChildOptions.Comm
	// ExtraFiles are passed on as fds 3, 4, …
	ExtraFiles []*os.File
}

// Child is a started ExecChild.
type Child struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   strings.Builder
	PID   int
}

// StartChild starts c; it connects to addr at once, or at Go with Wait.
func StartChild(t testing.TB, addr fmt.Stringer, c ExecChild) *Child {
	t.Helper()
	path := c.Path
	if path == "" {
		path = os.Args[0]
	}
	cmd := &exec.Cmd{Path: path, Args: c.Argv}
	if cmd.Args == nil {
		cmd.Args = []string{path}
	}
	cmd.Env = append(os.Environ(), childEnv+"="+addr.String()+"|"+c.Comm+"|")
	if c.Wait {
		cmd.Env = append(cmd.Env, envWait+"=1")
	}
	if c.Reexec != "" {
		cmd.Env = append(cmd.Env, envReexec+"="+c.Reexec)
	}
	if c.Chroot != "" {
		cmd.Env = append(cmd.Env, envChroot+"="+c.Chroot)
	}
	cmd.ExtraFiles = c.ExtraFiles
	ch := &Child{t: t, cmd: cmd}
	cmd.Stdout = &ch.out
	cmd.Stderr = os.Stderr
	var err error
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child %q: %v", path, err)
	}
	ch.PID = cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return ch
}

// Go lets a waiting child connect.
func (c *Child) Go() {
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		c.t.Fatalf("waking the child: %v", err)
	}
}

// Result waits for the child to exit and returns what it did.
func (c *Child) Result() ChildResult {
	c.t.Helper()
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		c.t.Fatalf("child: %v (%s)", err, c.out.String())
	}
	f := strings.Fields(c.out.String())
	if len(f) != 4 {
		c.t.Fatalf("child said %q", c.out.String())
	}
	r := ChildResult{HostPID: c.PID}
	r.PID, _ = strconv.Atoi(f[0])
	r.TID, _ = strconv.Atoi(f[1])
	sport, _ := strconv.Atoi(f[2])
	r.Sport = uint16(sport)
	e, _ := strconv.Atoi(f[3])
	r.Err = unix.Errno(e)
	return r
}

// CopyTestBinary copies the test binary to dir/name (made world-readable
// and executable) and returns the path.
func CopyTestBinary(t testing.TB, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := dir + "/" + name
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
