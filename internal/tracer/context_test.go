// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/tcpconnect/tcpconnect/internal/cgroups"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
)

func inode(t testing.TB, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// ownCgroup returns the directory of this process's cgroup v2.
func ownCgroup(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "0::"); ok {
			return filepath.Join(CgroupV2Mount(), rest)
		}
	}
	t.Fatal("no cgroup v2 line in /proc/self/cgroup")
	return ""
}

// TestTaskContext: ppid, cgroup id, namespaces and the PID inside the
// PID namespace, for our own connect.
func TestTaskContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		r := start(t, Config{Backend: b})
		ap := listen(t, "tcp4", "127.0.0.1:0")
		d := dial(t, ap)
		e := r.wait(t, 2*time.Second, "own connect", bySport(d.sport, ap.Port()))
		cg, err := cgroups.ID(ownCgroup(t))
		if err != nil {
			t.Fatal(err)
		}
		if e.PPID != uint32(os.Getppid()) || e.CgroupID != cg || e.PIDNsPID != uint32(os.Getpid()) ||
			e.NetnsIno != inode(t, "/proc/self/ns/net") || e.MntnsIno != inode(t, "/proc/self/ns/mnt") {
			t.Errorf("context %+v; want ppid %d cgroup %d pid_ns_pid %d netns %d mntns %d", e, os.Getppid(), cg,
				os.Getpid(), inode(t, "/proc/self/ns/net"), inode(t, "/proc/self/ns/mnt"))
		}
	})
}

const containerHex = "4f1c0ffee0ddba11c0de4f1c0ffee0ddba11c0de4f1c0ffee0ddba11c0de4f1c"

// containerCgroups makes cgroups of the test named like a docker scope
// and like a kubepods containerd scope.
func containerCgroups(t *testing.T) (docker, kube string) {
	t.Helper()
	docker = testutil.MakeCgroup(t, filepath.Join("system.slice", "docker-"+containerHex+".scope"))
	kube = testutil.MakeCgroup(t, filepath.Join("kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod0a1b2c3d_4e5f.slice", "cri-containerd-"+strings.Repeat("ab", 32)+".scope"))
	return docker, kube
}

func TestContainerCgroups(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		docker, kube := containerCgroups(t)
		res := cgroups.NewResolver(CgroupV2Mount())
		ap := listen(t, "tcp4", "127.0.0.1:0")
		for _, dir := range []string{docker, kube} {
			id, err := cgroups.ID(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := cgroups.ContainerID(dir)
			if want == "" {
				t.Fatalf("test cgroup %s has no container id", dir)
			}
			t.Run(filepath.Base(dir)[:12], func(t *testing.T) {
				for _, filter := range []string{"cgroup", "container", "parent-cgroup"} {
					var ids []uint64
					switch filter {
					case "cgroup":
						ids = []uint64{id}
					case "container":
						ids = res.Containers(want[:12])
					case "parent-cgroup":
						// --cgroup of an ancestor includes what is below it.
						pid, err := cgroups.ID(filepath.Dir(dir))
						if err != nil {
							t.Fatal(err)
						}
						ids = []uint64{pid}
					}
					r := start(t, Config{Backend: b, CgroupFilter: true, Cgroups: ids})
					child := testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Cgroup: dir})
					d := dial(t, ap)
					e := r.wait(t, 2*time.Second, "child in "+dir, bySport(child.Sport, ap.Port()))
					if e.CgroupID != id || e.PID != uint32(child.PID) {
						t.Errorf("%s filter: event cgroup %d pid %d, want %d %d", filter, e.CgroupID, e.PID, id, child.PID)
					}
					path, container := res.Lookup(e.CgroupID)
					if rel := strings.TrimPrefix(dir, CgroupV2Mount()); path != rel || container != want {
						t.Errorf("resolved %q %q, want %q %q", path, container, rel, want)
					}
					r.none(t, 200*time.Millisecond, filter+" filter: own connect", bySport(d.sport, ap.Port()))
					r.stop()
				}
			})
		}
	})
}

// TestNamespaces: a connect from another network namespace carries its
// inode, and --netns keeps only it; a child in a new PID namespace has
// PID 1 there.
func TestNamespaces(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ns := testutil.NewNetNS(t)
		r := start(t, Config{Backend: b, Netns: uint32(ns.Inode())})
		hostAP := listen(t, "tcp4", "127.0.0.1:0")
		var nsAP = hostAP
		var sport uint16
		if err := ns.Do(func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			nsAP = ln.Addr().(*net.TCPAddr).AddrPort()
			d := dial(t, nsAP)
			if d.err != 0 {
				return fmt.Errorf("connect in netns: %v", d.err)
			}
			sport = d.sport
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		e := r.wait(t, 2*time.Second, "connect in the namespace", bySport(sport, nsAP.Port()))
		if uint64(e.NetnsIno) != ns.Inode() {
			t.Errorf("netns %d, want %d", e.NetnsIno, ns.Inode())
		}
		d := dial(t, hostAP)
		r.none(t, 200*time.Millisecond, "host connect with --netns", bySport(d.sport, hostAP.Port()))
		r.stop()

		r = start(t, Config{Backend: b})
		child := testutil.ConnectFromChild(t, hostAP, testutil.ChildOptions{NewPIDNS: true})
		if child.PID != 1 {
			t.Fatalf("child in a new PID namespace says it is PID %d", child.PID)
		}
		e = r.wait(t, 2*time.Second, "child in new pid ns", bySport(child.Sport, hostAP.Port()))
		if e.PID != uint32(child.HostPID) || e.PIDNsPID != 1 {
			t.Errorf("pid %d pid_ns_pid %d, want %d and 1", e.PID, e.PIDNsPID, child.HostPID)
		}
	})
}

// TestPinnedMapFilters: bcc's --cgroupmap and --mntnsmap, with maps that
// the user pinned and can change while tcpconnect runs.
func TestPinnedMapFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		ap := listen(t, "tcp4", "127.0.0.1:0")
		// A bpffs of the test's own: the host may not mount one.
		bpffs := t.TempDir()
		if err := syscall.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
			t.Fatalf("mounting bpffs: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(bpffs, syscall.MNT_DETACH) })
		pin := func(name string, valueSize uint32) (*ebpf.Map, string) {
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: valueSize, MaxEntries: 128})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(bpffs, name)
			if err := m.Pin(path); err != nil {
				t.Fatalf("pinning in bpffs: %v", err)
			}
			t.Cleanup(func() { m.Unpin(); m.Close() })
			return m, path
		}

		docker, _ := containerCgroups(t)
		id, err := cgroups.ID(docker)
		if err != nil {
			t.Fatal(err)
		}
		cm, cpath := pin("cgroupmap", 8)
		r := start(t, Config{Backend: b, CgroupMap: cpath})
		// Filled after start: the map is read live.
		if err := cm.Put(id, uint64(0)); err != nil {
			t.Fatal(err)
		}
		child := testutil.ConnectFromChild(t, ap, testutil.ChildOptions{Cgroup: docker})
		d := dial(t, ap)
		r.wait(t, 2*time.Second, "child in the mapped cgroup", bySport(child.Sport, ap.Port()))
		r.none(t, 200*time.Millisecond, "own connect, cgroup not mapped", bySport(d.sport, ap.Port()))
		r.stop()

		mm, mpath := pin("mntnsmap", 4)
		r = start(t, Config{Backend: b, MntnsMap: mpath})
		d = dial(t, ap)
		r.none(t, 200*time.Millisecond, "own connect, mount ns not mapped", bySport(d.sport, ap.Port()))
		if err := mm.Put(uint64(inode(t, "/proc/self/ns/mnt")), uint32(0)); err != nil {
			t.Fatal(err)
		}
		d = dial(t, ap)
		r.wait(t, 2*time.Second, "own connect, mount ns mapped", bySport(d.sport, ap.Port()))
	})
}
