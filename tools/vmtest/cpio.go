// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// archive collects the initramfs contents in memory (file data stays on
// disk until written) so that later entries can replace earlier ones (a
// -file may shadow a busybox applet) and so that every parent directory
// can be emitted before its children: the kernel's initramfs unpacker
// does not create missing parent directories.
type archive struct {
	entries map[string]*entry
}

type entry struct {
	mode     uint32 // file type bits and permissions, as in stat(2)
	hostPath string // regular file: content comes from here ...
	data     []byte // ... or from here when hostPath is empty
	size     int64
	target   string // symlink target
	rmajor   uint32 // device nodes
	rminor   uint32
}

func newArchive() *archive {
	return &archive{entries: map[string]*entry{}}
}

// cleanName turns a guest path into the form used inside newc archives:
// relative to the root, without "./" or a leading slash.
func cleanName(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "", fmt.Errorf("invalid guest path %q", p)
	}
	return c, nil
}

func (a *archive) put(name string, e *entry) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	for dir := path.Dir(n); dir != "."; dir = path.Dir(dir) {
		if old, ok := a.entries[dir]; ok {
			if old.mode&syscall.S_IFMT != syscall.S_IFDIR {
				return fmt.Errorf("guest path %q needs %q to be a directory", name, dir)
			}
			continue
		}
		a.entries[dir] = &entry{mode: syscall.S_IFDIR | 0o755}
	}
	a.entries[n] = e
	return nil
}

// Dir adds a directory with the given permissions.
func (a *archive) Dir(name string, perm uint32) error {
	return a.put(name, &entry{mode: syscall.S_IFDIR | perm})
}

// Bytes adds a regular file with in-memory content.
func (a *archive) Bytes(name string, perm uint32, data []byte) error {
	return a.put(name, &entry{mode: syscall.S_IFREG | perm, data: data, size: int64(len(data))})
}

// File adds a regular file whose content is read from hostPath at write
// time, so that large test binaries are never held in memory.
func (a *archive) File(name string, perm uint32, hostPath string) error {
	fi, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("add %s: %w", hostPath, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("add %s: not a regular file", hostPath)
	}
	return a.put(name, &entry{mode: syscall.S_IFREG | perm, hostPath: hostPath, size: fi.Size()})
}

// Symlink adds a symbolic link.
func (a *archive) Symlink(name, target string) error {
	return a.put(name, &entry{mode: syscall.S_IFLNK | 0o777, target: target, size: int64(len(target))})
}

// CharDev adds a character device node.
func (a *archive) CharDev(name string, perm, major, minor uint32) error {
	return a.put(name, &entry{mode: syscall.S_IFCHR | perm, rmajor: major, rminor: minor})
}

// WriteTo writes the archive in the "newc" (070701) cpio format, which is
// the one the kernel unpacks from an initramfs.
func (a *archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	// A parent is a strict prefix of its children and thus sorts first.
	sort.Strings(names)

	cw := &countWriter{w: w}
	for i, n := range names {
		if err := writeEntry(cw, uint32(i+1), n, a.entries[n]); err != nil {
			return cw.n, err
		}
	}
	if err := writeHeader(cw, 0, "TRAILER!!!", &entry{}, 1); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func writeEntry(w *countWriter, ino uint32, name string, e *entry) error {
	nlink := uint32(1)
	if e.mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	if err := writeHeader(w, ino, name, e, nlink); err != nil {
		return err
	}
	switch {
	case e.mode&syscall.S_IFMT == syscall.S_IFLNK:
		if _, err := io.WriteString(w, e.target); err != nil {
			return err
		}
	case e.hostPath != "":
		f, err := os.Open(e.hostPath)
		if err != nil {
			return fmt.Errorf("add %s: %w", e.hostPath, err)
		}
		n, err := io.Copy(w, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("add %s: %w", e.hostPath, err)
		}
		if n != e.size {
			return fmt.Errorf("add %s: size changed while writing (%d, was %d)", e.hostPath, n, e.size)
		}
	default:
		if _, err := w.Write(e.data); err != nil {
			return err
		}
	}
	return pad4(w)
}

func writeHeader(w *countWriter, ino uint32, name string, e *entry, nlink uint32) error {
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with the NUL), check.
	// mtime stays 0 so that identical inputs give identical archives.
	if e.size > 0xffffffff {
		return fmt.Errorf("%s: %d bytes is too large for a newc archive", name, e.size)
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, uint32(e.size), 0, 0, e.rmajor, e.rminor, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	return pad4(w)
}

func pad4(w *countWriter) error {
	if r := w.n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
