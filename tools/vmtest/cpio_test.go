// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

type cpioEntry struct {
	name         string
	mode         uint32
	nlink        uint32
	rmaj, rmin   uint32
	data         string
	headerOffset int
}

// readNewc is an independent reader of the "newc" format, to check the
// writer against the format rather than against itself.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 {
			t.Fatalf("header at %d is not 4-byte aligned", off)
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		e := cpioEntry{mode: field(1), nlink: field(4), rmaj: field(9), rmin: field(10), headerOffset: off}
		size := int(field(6))
		nameSize := int(field(11))
		nameStart := off + 110
		if b[nameStart+nameSize-1] != 0 {
			t.Fatalf("name at %d not NUL-terminated", nameStart)
		}
		e.name = string(b[nameStart : nameStart+nameSize-1])
		dataStart := align(nameStart + nameSize)
		e.data = string(b[dataStart : dataStart+size])
		off = align(dataStart + size)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(host, []byte("binary!"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newArchive()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Bytes("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n")))
	must(a.File("usr/local/bin/prog", 0o755, host))
	must(a.Symlink("bin/sh", "/bin/busybox"))
	must(a.CharDev("dev/console", 0o600, 5, 1))
	must(a.Bytes("a", 0o644, nil))
	must(a.Bytes("./etc/../etc/motd", 0o644, []byte("x"))) // cleaned to etc/motd
	must(a.Bytes("bin/sh", 0o755, []byte("replaced")))     // later entry wins

	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	must(err)
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	got := readNewc(t, buf.Bytes())

	want := []struct {
		name string
		mode uint32
		data string
	}{
		{"a", syscall.S_IFREG | 0o644, ""},
		{"bin", syscall.S_IFDIR | 0o755, ""},
		{"bin/sh", syscall.S_IFREG | 0o755, "replaced"},
		{"dev", syscall.S_IFDIR | 0o755, ""},
		{"dev/console", syscall.S_IFCHR | 0o600, ""},
		{"etc", syscall.S_IFDIR | 0o755, ""},
		{"etc/hosts", syscall.S_IFREG | 0o644, "127.0.0.1 localhost\n"},
		{"etc/motd", syscall.S_IFREG | 0o644, "x"},
		{"usr", syscall.S_IFDIR | 0o755, ""},
		{"usr/local", syscall.S_IFDIR | 0o755, ""},
		{"usr/local/bin", syscall.S_IFDIR | 0o755, ""},
		{"usr/local/bin/prog", syscall.S_IFREG | 0o755, "binary!"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.mode != w.mode || g.data != w.data {
			t.Errorf("entry %d = %q mode %o data %q, want %q mode %o data %q", i, g.name, g.mode, g.data, w.name, w.mode, w.data)
		}
	}
	for _, g := range got {
		if g.name == "dev/console" && (g.rmaj != 5 || g.rmin != 1) {
			t.Errorf("dev/console is %d:%d, want 5:1", g.rmaj, g.rmin)
		}
		if g.mode&syscall.S_IFMT == syscall.S_IFDIR && g.nlink != 2 {
			t.Errorf("%s: nlink %d, want 2", g.name, g.nlink)
		}
	}
}

func TestArchiveSymlinkData(t *testing.T) {
	a := newArchive()
	if err := a.Symlink("sbin/ip", "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	if len(got) != 2 || got[1].name != "sbin/ip" || got[1].data != "/bin/busybox" || got[1].mode != syscall.S_IFLNK|0o777 {
		t.Fatalf("got %+v", got)
	}
}

func TestArchiveRejects(t *testing.T) {
	a := newArchive()
	if err := a.Bytes("/", 0o644, nil); err == nil {
		t.Error("accepted the root as a file name")
	}
	if err := a.Bytes("x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Bytes("x/y", 0o644, nil); err == nil {
		t.Error("accepted a file below a regular file")
	}
	if err := a.File("z", 0o755, t.TempDir()); err == nil {
		t.Error("accepted a directory as file content")
	}
}
