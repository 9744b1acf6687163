// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// blob builds a BTF blob with the given type and string sections.
func blob(types, strs []byte) []byte {
	h := make([]byte, hdrLen)
	copy(h, btfHeader)
	binary.LittleEndian.PutUint32(h[8:], 0)
	binary.LittleEndian.PutUint32(h[12:], uint32(len(types)))
	binary.LittleEndian.PutUint32(h[16:], uint32(len(types)))
	binary.LittleEndian.PutUint32(h[20:], uint32(len(strs)))
	return append(append(h, types...), strs...)
}

func TestCarve(t *testing.T) {
	small := blob(make([]byte, 16), []byte("\x00a\x00"))
	large := blob(bytes.Repeat([]byte{1}, 64), []byte("\x00task_struct\x00pt_regs\x00"))
	// A header whose sections run past the end of the image.
	broken := blob(make([]byte, 16), []byte("\x00x\x00"))[:hdrLen+4]
	img := append([]byte("kernel code"), small...)
	img = append(img, []byte("more code")...)
	img = append(img, large...)
	img = append(img, []byte("tail")...)
	img = append(img, broken...)
	got, err := carve(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, large) {
		t.Errorf("carved %d bytes, want the %d-byte blob", len(got), len(large))
	}
	if _, err := carve([]byte("no btf here")); err == nil {
		t.Error("carve found BTF in an image without any")
	}
	if _, err := carve(broken); err == nil {
		t.Error("carve accepted a truncated blob")
	}
}
