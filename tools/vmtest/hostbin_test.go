// SPDX-License-Identifier: Apache-2.0

package main

import (
	"reflect"
	"testing"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd8b5f2000)\n" +
		"\tlibmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f7b4a0f1000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f7b49f10000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f7b4a13a000)\n"
	got, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libmnl.so.0", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseLdd = %q, want %q", got, want)
	}
	if _, err := parseLdd("\tlibgone.so.1 => not found\n"); err == nil {
		t.Error("a missing library was not reported")
	}
	if got, err := parseLdd("\tstatically linked\n"); err != nil || len(got) != 0 {
		t.Errorf("static program: %q, %v", got, err)
	}
}
