// SPDX-License-Identifier: Apache-2.0

// Package cgroups names cgroup v2 ids: the path of the cgroup under the
// cgroup v2 mount and the container id that a container runtime wrote
// into it. The kernel reports only the id (the inode number of the
// cgroup's directory), so the paths come from walking the mount.
package cgroups

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ContainerID returns the 64-hex container id in a cgroup path, or "".
// It knows the layouts of docker (docker-<id>.scope, or /docker/<id>),
// containerd and CRI (cri-containerd-<id>.scope), cri-o (crio-<id>.scope),
// podman (libpod-<id>.scope) and kubepods (…/pod<uid>/<id> with the
// cgroupfs driver). A runtime's own helper scopes (libpod-conmon-…,
// crio-conmon-…) are not containers.
//
// The outermost match wins: what a container does inside its own cgroup
// (systemd in it, a nested runtime, a cgroup named after another
// container) cannot change which container it is. A bare id is docker's
// and kubelet's cgroupfs layout, and nerdctl's (/k8s.io/<id>, /default/<id>).
func ContainerID(path string) string {
	id, _ := containerMatch(path)
	return id
}

// containerMatch returns the container id of path and the path of the
// cgroup that names it ("" when none).
func containerMatch(path string) (id, cgroup string) {
	parts := strings.Split(path, "/")
	for i := range parts {
		name := strings.TrimSuffix(parts[i], ".scope")
		for _, prefix := range []string{"docker-", "cri-containerd-", "crio-", "libpod-"} {
			if id, ok := strings.CutPrefix(name, prefix); ok && isContainerID(id) {
				return id, strings.Join(parts[:i+1], "/")
			}
		}
		if isContainerID(parts[i]) {
			return parts[i], strings.Join(parts[:i+1], "/")
		}
	}
	return "", ""
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// ID returns the cgroup v2 id of the cgroup directory dir.
func ID(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, fmt.Errorf("%s is not a cgroup directory", dir)
	}
	return st.Ino, nil
}

// Resolver maps cgroup ids to paths and container ids, walking the mount
// again (at most once a second) when it meets an id it does not know.
type Resolver struct {
	root string
	// trustedUID owns the parents of the cgroups whose container ids are
	// believed: root, which container runtimes run as. A subtree
	// delegated to a user (user@UID.service, rootless containers) is
	// theirs to name as they like, a cgroup called libpod-<another
	// container's id> included: its path is shown, its container id is
	// not. The parent, not the cgroup itself: runc hands a user-namespace
	// container its own cgroup, but it made it in a cgroup of root's.
	trustedUID uint32

	mu       sync.Mutex
	byID     map[uint64]entry
	lastScan time.Time
}

type entry struct {
	path      string // under root, starting with "/"
	container string
}

// rescanEvery bounds how often an unknown id makes us walk the tree.
const rescanEvery = time.Second

// NewResolver returns a resolver for the cgroup v2 hierarchy at root.
func NewResolver(root string) *Resolver {
	return &Resolver{root: root, byID: map[uint64]entry{}}
}

// Lookup returns the path (relative to the mount, "/" for the root) and
// the container id of cgroup id; "" when unknown (a cgroup that is gone).
func (r *Resolver) Lookup(id uint64) (path, container string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	if !ok && time.Since(r.lastScan) >= rescanEvery {
		r.scanLocked()
		e = r.byID[id]
	}
	return e.path, e.container
}

func (r *Resolver) scanLocked() {
	r.lastScan = time.Now()
	// Owners of the cgroups seen so far: the walk visits a parent
	// before its children, so the cgroup that names a container is here
	// when its descendants are met.
	owners := map[string]uint32{}
	_ = filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // cgroups come and go while we walk
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, r.root), "/")
		owners[rel] = st.Uid
		id, named := containerMatch(rel)
		if owner, ok := owners[path.Dir(named)]; !ok || owner != r.trustedUID {
			id = ""
		}
		r.byID[st.Ino] = entry{path: rel, container: id}
		return nil
	})
}

// Containers returns the ids of the cgroups whose container id starts
// with prefix (and of the cgroups below them, which Lookup's ancestor
// filter covers anyway).
func (r *Resolver) Containers(prefix string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scanLocked()
	var ids []uint64
	for id, e := range r.byID {
		if e.container != "" && strings.HasPrefix(e.container, prefix) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Resolve turns a --cgroup argument (a path under the mount, absolute
// or relative to it) into the cgroup's directory.
func Resolve(root, arg string) (string, error) {
	dir := filepath.Clean(arg)
	if !strings.HasPrefix(dir, root+"/") && dir != root {
		dir = filepath.Join(root, arg)
	}
	// ".." must not lead out of the hierarchy.
	if !strings.HasPrefix(dir, root+"/") && dir != root {
		return "", fmt.Errorf("%s is not a cgroup under %s", arg, root)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s is not a cgroup under %s", arg, root)
		}
		return "", err
	}
	return dir, nil
}

// Mount returns where the cgroup v2 hierarchy is mounted, or "".
// Attaching at its root covers every process: cgroup programs are
// inherited by all descendants.
func Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID parent major:minor root mountpoint options ... - fstype source superopts
		fields := strings.Fields(s.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 && fields[3] == "/" {
				return fields[4]
			}
		}
	}
	return ""
}
