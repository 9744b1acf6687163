// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// fakeBzImage builds the parts of a bzImage that extractVmlinux reads: a
// setup header (boot protocol 2.15) pointing at a gzip payload that ends
// with the uncompressed size, as the kernel's build lays it out.
func fakeBzImage(t *testing.T, vmlinux []byte, withHeader bool) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(vmlinux)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	payload := binary.LittleEndian.AppendUint32(z.Bytes(), uint32(len(vmlinux)))

	const setupSects = 3
	img := make([]byte, (setupSects+1)*512+100) // setup, then 100 bytes of decompressor
	payloadOffset := 100
	if withHeader {
		img[0x1f1] = setupSects
		copy(img[0x202:], "HdrS")
		binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
		binary.LittleEndian.PutUint32(img[0x248:], uint32(payloadOffset))
		binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	}
	img = append(img, payload...)
	return append(img, bytes.Repeat([]byte{0xee}, 64)...) // trailing data
}

func TestExtractVmlinux(t *testing.T) {
	vmlinux := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel "), 1000)...)
	for _, withHeader := range []bool{true, false} {
		got, err := extractVmlinux(fakeBzImage(t, vmlinux, withHeader))
		if err != nil {
			t.Fatalf("header %v: %v", withHeader, err)
		}
		if !bytes.Equal(got, vmlinux) {
			t.Errorf("header %v: got %d bytes, want %d", withHeader, len(got), len(vmlinux))
		}
	}
	if _, err := extractVmlinux(fakeBzImage(t, []byte("not an elf"), true)); err == nil {
		t.Error("accepted a payload that is not ELF")
	}
	if _, err := extractVmlinux(make([]byte, 4096)); err == nil {
		t.Error("accepted an image without payload")
	}
}

func TestDetectCompression(t *testing.T) {
	for name, data := range map[string][]byte{
		"xz":   {0xfd, '7', 'z', 'X', 'Z', 0, 1},
		"zstd": {0x28, 0xb5, 0x2f, 0xfd, 0},
		"gzip": {0x1f, 0x8b, 0x08, 0},
	} {
		if c := detectCompression(data); c == nil || c.name != name {
			t.Errorf("%s not detected: %v", name, c)
		}
	}
	if c := detectCompression([]byte("\x7fELF")); c != nil {
		t.Errorf("ELF detected as %s", c.name)
	}
}

// TestLockFileMakesTheFolder: in a fresh clone the cache folder does not
// exist yet, and the arm64 guest, started in the background, may reach
// its lock before the amd64 one has made it (CI failed so).
func TestLockFileMakesTheFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmtest", "kernel.lock")
	unlock, err := lockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}
