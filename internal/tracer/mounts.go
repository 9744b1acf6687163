// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// attachDirs is where, in the private mount namespace of inPrivateMounts,
// tracefs and the cgroup v2 hierarchy are mounted when the host does not
// show them.
const (
	tracefsDir = "/sys/kernel/tracing"
	cgroup2Dir = "/sys/fs/cgroup"
)

// tracefsMounted reports whether the calling thread's mount namespace
// has tracefs mounted. It reads mountinfo rather than looking at the
// paths: touching /sys/kernel/debug/tracing makes debugfs automount
// tracefs there, in the namespace of whoever touches it, which would
// leave a mount behind. (thread-self, not self: self is the main
// thread, whose namespace may differ from this one's.)
func tracefsMounted() bool {
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		// ... mountpoint ... - fstype source options
		_, after, ok := strings.Cut(line, " - ")
		if ok && strings.HasPrefix(after, "tracefs ") {
			return true
		}
	}
	return false
}

// inPrivateMounts runs attach with what attaching needs mounted:
// tracefs (tracepoint IDs are read from it; these project machines do not
// mount it at boot) and the root of the cgroup v2 hierarchy (where the
// sockops and cgroup programs go; cgroupPath is "" when the host shows
// none, or only a cgroup namespace's part of it, as in a pod).
//
// They are mounted in a mount namespace of a thread of our own, which is
// thrown away afterwards: the mounts vanish with it, no other process
// (another tcpconnect, a test running in parallel) ever sees them come
// and go, and nothing the host mounts or unmounts meanwhile reaches us.
// The links do not need the mounts once they exist.
func inPrivateMounts(logf func(string, ...any), cgroupPath string, attach func(cgroupPath string) error) error {
	return onThrowawayThread(func() error {
		// Always a tracefs of our own, even where the host has one:
		// whoever mounted that may unmount it while we read it (seen
		// here with a benchmark's bpftrace run next to the tests).
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			if tracefsMounted() && cgroupPath != "" {
				// Without CAP_SYS_ADMIN: use what the host mounts.
				return attach(cgroupPath)
			}
			// Say what is missing, not only the syscall that failed.
			var missing []string
			if !tracefsMounted() {
				missing = append(missing, "tracefs (mount it at "+tracefsDir+")")
			}
			if cgroupPath == "" {
				missing = append(missing, "the cgroup v2 hierarchy")
			}
			return fmt.Errorf("making a private mount namespace to mount %s: %w (needs CAP_SYS_ADMIN, or mount them on the host)", strings.Join(missing, " and "), err)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("making mounts private: %w", err)
		}
		// This namespace's copy of a host tracefs is ours now: the host
		// unmounting its own does not reach it.
		if !tracefsMounted() {
			if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
				return fmt.Errorf("mounting tracefs at %s: %w", tracefsDir, err)
			}
			logf("mounted tracefs at %s for this process only", tracefsDir)
		}
		if cgroupPath == "" {
			if path, err := mountHostCgroup2(logf); err != nil {
				logf("no cgroup v2 hierarchy for sockops and -d: %v", err)
			} else {
				cgroupPath = path
			}
		}
		return attach(cgroupPath)
	})
}

// onThrowawayThread runs fn on an OS thread of its own that ends with it,
// so that what fn changes about its thread (namespaces) never reaches
// another goroutine. Go ends a thread whose goroutine exits locked, except
// the process's main thread, which it keeps: fn must not run there, or
// the whole process would report the private namespace (/proc/self/ns).
func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread, a new goroutine gets another one.
			inner := make(chan error, 1)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends here
				inner <- fn()
			}()
			err := <-inner
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		errc <- fn() // never unlocked: the thread ends here
	}()
	return <-errc
}

// mountHostCgroup2 mounts the root of the cgroup v2 hierarchy, from the
// host's cgroup namespace when we are in another one (a pod with hostPID
// sees the host's /proc/1).
func mountHostCgroup2(logf func(string, ...any)) (string, error) {
	var self, host unix.Stat_t
	if unix.Stat("/proc/self/ns/cgroup", &self) == nil && unix.Stat("/proc/1/ns/cgroup", &host) == nil && self.Ino != host.Ino {
		fd, err := unix.Open("/proc/1/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("opening the host's cgroup namespace: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWCGROUP)
		unix.Close(fd)
		if err != nil {
			return "", fmt.Errorf("joining the host's cgroup namespace: %w", err)
		}
		logf("joined the host's cgroup namespace (this thread only)")
	}
	if fi, err := os.Stat(cgroup2Dir); err != nil || !fi.IsDir() {
		return "", errors.New(cgroup2Dir + " does not exist")
	}
	if err := unix.Mount("cgroup2", cgroup2Dir, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mounting cgroup2 at %s: %w", cgroup2Dir, err)
	}
	logf("mounted the cgroup v2 hierarchy at %s for this process only", cgroup2Dir)
	return cgroup2Dir, nil
}
