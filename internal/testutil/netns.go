// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNS is a network namespace created for one test and removed by t.Cleanup.
//
// The namespace is unnamed: it lives only as long as something references it
// (our open fd, a socket created inside it, a process in it). Unlike a bind
// mount under /run/netns, nothing is left behind on the host when the test
// binary is killed before its cleanups run, and it needs no writable /run.
type NetNS struct {
	// mu guards closed and the lazily created nftables state, because tests
	// may call the helpers from parallel subtests.
	mu     sync.Mutex
	closed bool
	ns     netns.NsHandle
	path   string
	inode  uint64

	nft       *nftables.Conn
	nftTable  *nftables.Table
	nftInput  *nftables.Chain
	nftOutput *nftables.Chain
	// Made on first use by DNAT and RejectForwardICMP.
	nftNATOutput *nftables.Chain
	nftForward   *nftables.Chain
	nftSeq       uint64
}

// NewNetNS creates a new, empty network namespace with lo up, so that
// 127.0.0.1 and ::1 are usable inside it. The calling goroutine and its
// thread are left in the namespace they were in.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	h, err := unshareNetNS()
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		_ = h.Close()
		t.Fatalf("fstat network namespace: %v", err)
	}
	n := &NetNS{
		ns: h,
		// /proc/<pid>/fd/<fd> stays valid for as long as we keep the fd, which
		// a /proc/<pid>/task/<tid>/ns/net path would not (the thread is
		// released after creation), and it is openable by other processes
		// (nsenter --net=PATH, setns) as long as they may look into our /proc.
		path:  fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h)),
		inode: st.Ino,
	}
	t.Cleanup(n.close)

	if err := n.Do(setupNewNetNS); err != nil {
		t.Fatalf("set up network namespace %s: %v", n.path, err)
	}
	return n
}

// unshareNetNS creates a namespace on a throw-away locked thread and returns
// an fd for it. A new namespace can only be made by moving a thread into it,
// so the thread is moved back afterwards; if that fails it stays locked and
// the runtime ends it when the goroutine exits, instead of handing a thread
// in the wrong namespace to unrelated goroutines.
func unshareNetNS() (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("get current namespace: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.New() // unshare(CLONE_NEWNET) + open it
		if rerr := netns.Set(orig); rerr != nil {
			if err == nil {
				_ = h.Close()
			}
			ch <- result{-1, fmt.Errorf("restore thread namespace: %w", rerr)}
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		ch <- result{h, err}
	}()
	r := <-ch
	return r.h, r.err
}

// setupNewNetNS runs inside a fresh namespace.
func setupNewNetNS() error {
	// Duplicate address detection would leave every IPv6 address (including
	// the link-local ones of veths added later) tentative, i.e. unusable for
	// bind(), for about a second. Nothing else lives in the namespace, so
	// there is nothing to detect. Missing ipv6 sysctls mean IPv6 is disabled;
	// then there is nothing to configure either.
	for _, key := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := writeSysctl(key, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	// Bringing lo up makes the kernel add 127.0.0.1/8 and ::1.
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	addrs := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		addrs = append(addrs, netip.MustParsePrefix("::1/128"))
	}
	if err := waitUsable("lo", addrs, time.Now().Add(linkReadyTimeout)); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	return nil
}

// Close releases the namespace before the test ends: once nothing else
// holds it (no socket, no process in it), the kernel frees it. It may be
// called more than once.
func (n *NetNS) Close() { n.close() }

func (n *NetNS) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return // its fd number may already be another file's
	}
	// The nftables conn is transient (a socket per operation), so there is
	// nothing to close; its table goes away with the namespace.
	n.nft = nil
	n.closed = true
	_ = n.ns.Close()
}

// handle returns the namespace fd, or an error after cleanup: an fd number
// that has been closed may already name an unrelated file, or another test's
// namespace, so it must not be used again.
func (n *NetNS) handle() (netns.NsHandle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return -1, fmt.Errorf("network namespace %s already removed", n.path)
	}
	return n.ns, nil
}

// Do runs fn on a goroutine locked to an OS thread that has joined the
// namespace, waits, and returns fn's error. Sockets created by fn keep the
// namespace after Do returns.
//
// After fn the thread is switched back to its previous namespace and only
// then unlocked, so the runtime never reuses it in the wrong namespace; if
// switching back fails the thread stays locked and is ended by the runtime
// when the goroutine exits. A panic in fn is returned as an error carrying
// the stack. fn must not call t.FailNow/t.Fatal/t.Skip (they only work on the
// test goroutine); if it does, Do returns an error saying so.
func (n *NetNS) Do(fn func() error) error {
	target, err := n.handle()
	if err != nil {
		return err
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		if err := netns.Set(target); err != nil {
			_ = orig.Close()
			runtime.UnlockOSThread() // setns failed, so the thread is unchanged
			ch <- fmt.Errorf("join namespace %s: %w", n.path, err)
			return
		}
		returned := false
		var fnErr error
		// Deferred so that the thread is restored and the caller released
		// even when fn panics or calls runtime.Goexit.
		defer func() {
			if !returned {
				if r := recover(); r != nil {
					fnErr = fmt.Errorf("panic in NetNS.Do: %v\n%s", r, debug.Stack())
				} else {
					fnErr = errors.New("fn called runtime.Goexit (t.FailNow/Fatal/Skip?) inside NetNS.Do")
				}
			}
			rerr := netns.Set(orig)
			_ = orig.Close()
			if rerr != nil {
				fnErr = errors.Join(fnErr, fmt.Errorf("restore thread namespace: %w", rerr))
				// Keep the thread locked: it dies with this goroutine.
			} else {
				runtime.UnlockOSThread()
			}
			ch <- fnErr
		}()
		fnErr = fn()
		returned = true
	}()
	return <-ch
}

// Path returns a path that opens the namespace (for setns(2), nsenter
// --net=PATH, or a tool under test that takes a namespace path). It is valid
// until the test's cleanup runs.
func (n *NetNS) Path() string { return n.path }

// Inode returns the namespace's inode number, as stat -L on Path reports it
// and as the kernel reports it in net->ns.inum.
func (n *NetNS) Inode() uint64 { return n.inode }

// Sysctl writes /proc/sys/<key with dots as slashes> inside the namespace,
// e.g. ("net.ipv4.tcp_syn_retries", "1") or
// ("net.ipv4.ip_local_port_range", "40000 40000").
//
// /proc/sys/net resolves to the namespace of the thread that opens the file,
// hence the write inside Do. Keys with a '/' are used as paths as they are,
// for interface names containing dots.
func (n *NetNS) Sysctl(key, value string) error {
	return n.Do(func() error { return writeSysctl(key, value) })
}

func writeSysctl(key, value string) error {
	rel := key
	if !strings.Contains(key, "/") {
		rel = strings.ReplaceAll(key, ".", "/")
	}
	rel = filepath.Clean(rel)
	if key == "" || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("sysctl: invalid key %q", key)
	}
	p := filepath.Join("/proc/sys", rel)
	// O_TRUNC/O_CREATE from os.WriteFile are harmless on procfs; the kernel
	// parses the whole value from one write.
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%q: %w", key, value, err)
	}
	return nil
}
