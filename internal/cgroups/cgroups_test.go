// SPDX-License-Identifier: Apache-2.0

package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestContainerID(t *testing.T) {
	for path, want := range map[string]string{
		"/system.slice/docker-" + id + ".scope":         id,
		"/docker/" + id:                                 id,
		"/system.slice/cri-containerd-" + id + ".scope": id,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-" + id + ".scope": id,
		"/kubepods/burstable/pod1a2b3c/" + id:              id,
		"/machine.slice/libpod-" + id + ".scope":           id,
		"/machine.slice/libpod-" + id + ".scope/container": id,
		"/system.slice/crio-" + id + ".scope":              id,
		"/machine.slice/libpod-conmon-" + id + ".scope":    "",
		"/system.slice/sshd.service":                       "",
		"/":                                                "",
		"/docker-" + strings.ToUpper(id) + ".scope":        "",
		"/docker-" + id[:63] + ".scope":                    "",
		// The outermost match: a container cannot rename itself.
		"/machine.slice/libpod-" + id + ".scope/libpod-" + strings.Repeat("f", 64) + ".scope": id,
		"/system.slice/docker-" + id + ".scope/" + strings.Repeat("f", 64):                    id,
		"/kubepods/besteffort/pod9/" + id:                                                     id,
		"/kubepods/pod9/" + id:                                                                id,
		"/k8s.io/" + id:                                                                       id,
	} {
		if got := ContainerID(path); got != want {
			t.Errorf("ContainerID(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestResolverWalksATree(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "system.slice", "docker-"+id+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ino, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(root)
	r.trustedUID = uint32(os.Getuid()) // root in CI; whoever runs it otherwise
	path, c := r.Lookup(ino)
	if path != "/system.slice/docker-"+id+".scope" || c != id {
		t.Errorf("Lookup = %q %q", path, c)
	}
	if ids := r.Containers(id[:12]); len(ids) != 1 || ids[0] != ino {
		t.Errorf("Containers = %v, want [%d]", ids, ino)
	}
	if ids := r.Containers("ffff"); len(ids) != 0 {
		t.Errorf("Containers(ffff) = %v", ids)
	}
}

// TestResolverTrustsOnlyRootsCgroups: in a subtree that belongs to a user
// (a delegated user@UID.service), a cgroup named after a container is
// not that container: any user can make one and move into it.
func TestResolverTrustsOnlyRootsCgroups(t *testing.T) {
	if os.Getuid() != 0 {
		// testutil.RequirePrivileged's rule; testutil imports this package.
		if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal("giving a directory to another user needs root")
		}
		t.Skip("SKIP: giving a directory to another user needs root")
	}
	root := t.TempDir()
	delegated := filepath.Join(root, "user.slice", "user-65534.slice", "user@65534.service")
	forged := filepath.Join(delegated, "app.slice", "libpod-"+id+".scope")
	forgedTop := filepath.Join(delegated, strings.Repeat("e", 64))
	real := filepath.Join(root, "machine.slice", "libpod-"+id+".scope")
	// A user-namespace container: runc made its cgroup in root's and
	// gave it to the container's root.
	userns := filepath.Join(root, "machine.slice", "libpod-"+strings.Repeat("a", 64)+".scope")
	for _, d := range []string{forged, forgedTop, real, userns} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{delegated, filepath.Dir(forged), forged, forgedTop} {
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(userns, 100000, 100000); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(root)
	for dir, want := range map[string]string{forged: "", forgedTop: "", real: id, userns: strings.Repeat("a", 64)} {
		ino, err := ID(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, c := r.Lookup(ino); c != want {
			t.Errorf("%s: container %q, want %q", dir, c, want)
		}
	}
	if ids := r.Containers(id[:12]); len(ids) != 1 {
		t.Errorf("Containers(%s) = %v: want only the real one", id[:12], ids)
	}
}
