// SPDX-License-Identifier: Apache-2.0

package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzContainerID: cgroup paths are named by container runtimes after
// untrusted input. An id found is 64 lower-case hex digits taken from
// the path; nothing panics.
func FuzzContainerID(f *testing.F) {
	id := strings.Repeat("4f1c", 16)
	for _, s := range []string{
		"/system.slice/docker-" + id + ".scope",
		"/kubepods/burstable/pod1234/" + id,
		"/machine.slice/libpod-conmon-" + id + ".scope",
		"/a/crio-" + id + ".scope/b",
		"", "/", "////", "docker-.scope",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got := ContainerID(path)
		if got == "" {
			return
		}
		if !isContainerID(got) || !strings.Contains(path, got) {
			t.Errorf("ContainerID(%q) = %q", path, got)
		}
	})
}

// FuzzResolve: whatever --cgroup says, the directory it resolves to is
// the hierarchy's root or below it.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"/", "a", "/a/b", "..", "../..", "a/../../etc", "/a/../..", "", "."} {
		f.Add(s)
	}
	root := f.TempDir()
	for _, d := range []string{"", "a", "a/b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, d, "cgroup.procs"), nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	// Outside the root, a directory that looks like a cgroup.
	if err := os.WriteFile(filepath.Join(filepath.Dir(root), "cgroup.procs"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		dir, err := Resolve(root, arg)
		if err != nil {
			return
		}
		if dir = filepath.Clean(dir); dir != root && !strings.HasPrefix(dir, root+"/") {
			t.Errorf("Resolve(%q) = %q, outside %s", arg, dir, root)
		}
	})
}
