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
