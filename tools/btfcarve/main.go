// SPDX-License-Identifier: Apache-2.0

// Command btfcarve copies the kernel's BTF out of a kernel image that
// holds it uncompressed (an arm64 Image, as Debian's arm64 vmlinuz is),
// so that `bpftool btf dump file` can turn it into a vmlinux.h without
// booting that kernel.
//
//	go run ./tools/btfcarve IMAGE > vmlinux.btf
//
// The .BTF section starts with struct btf_header (include/uapi/linux/btf.h):
// magic 0xeB9F, version 1, flags 0, hdr_len 24, then the offsets and
// lengths of the type and string sections, which give its size. An image
// can hold other, small BTF blobs (a module's, a test's); the largest
// candidate is vmlinux's.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: btfcarve IMAGE > vmlinux.btf")
		os.Exit(2)
	}
	img, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "btfcarve: %v\n", err)
		os.Exit(1)
	}
	btf, err := carve(img)
	if err != nil {
		fmt.Fprintf(os.Stderr, "btfcarve: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(btf); err != nil {
		fmt.Fprintf(os.Stderr, "btfcarve: %v\n", err)
		os.Exit(1)
	}
}

// btfHeader is magic 0xeB9F, version 1, flags 0 and hdr_len 24, little
// endian: the only header layout the kernel has ever written.
var btfHeader = []byte{0x9f, 0xeb, 1, 0, 24, 0, 0, 0}

const hdrLen = 24

// carve returns the largest well-formed BTF blob in img.
func carve(img []byte) ([]byte, error) {
	var best []byte
	for off := 0; ; {
		i := bytes.Index(img[off:], btfHeader)
		if i < 0 {
			break
		}
		p := off + i
		off = p + 1
		if p+hdrLen > len(img) {
			break
		}
		h := img[p : p+hdrLen]
		typeOff := uint64(binary.LittleEndian.Uint32(h[8:]))
		typeLen := uint64(binary.LittleEndian.Uint32(h[12:]))
		strOff := uint64(binary.LittleEndian.Uint32(h[16:]))
		strLen := uint64(binary.LittleEndian.Uint32(h[20:]))
		end := hdrLen + max(typeOff+typeLen, strOff+strLen)
		// A match inside other data would give sections that overlap or
		// run past the image; the string section starts with a NUL.
		if typeLen == 0 || strLen == 0 || uint64(p)+end > uint64(len(img)) ||
			(typeOff < strOff && typeOff+typeLen > strOff) || (strOff < typeOff && strOff+strLen > typeOff) ||
			img[p+hdrLen+int(strOff)] != 0 {
			continue
		}
		if int(end) > len(best) {
			best = img[p : p+int(end)]
		}
	}
	if best == nil {
		return nil, errors.New("no BTF found (a compressed image must be decompressed first)")
	}
	return best, nil
}
