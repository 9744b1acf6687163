// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

func TestParseMarker(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int
		ok   bool
	}{
		{"VMTEST-EXIT=0\n", 0, true},
		{"VMTEST-EXIT=1\r\n", 1, true},
		{"  VMTEST-EXIT=255  ", 255, true},
		{"VMTEST-EXIT=256\n", 0, false},
		{"VMTEST-EXIT=-1\n", 0, false},
		{"VMTEST-EXIT=\n", 0, false},
		{"VMTEST-EXIT=3x\n", 0, false},
		{"echo VMTEST-EXIT=3\n", 0, false},
		{"hello\n", 0, false},
	} {
		code, ok := parseMarker(tc.line)
		if code != tc.code || ok != tc.ok {
			t.Errorf("parseMarker(%q) = %d, %v; want %d, %v", tc.line, code, ok, tc.code, tc.ok)
		}
	}
}

// A console stream as QEMU delivers it: firmware control codes, kernel
// messages, /init's markers, the command's output, power-off message.
const consoleStream = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n" +
	"[    0.000000] Linux version 6.1.0\r\n" +
	"\r\n" +
	"VMTEST-START\r\n" +
	"=== RUN   TestX\r\n" +
	"\r\n" +
	"--- PASS: TestX\r\n" +
	"no newline at end" +
	"\r\n" +
	"VMTEST-EXIT=7\r\n" +
	"[    2.279709] reboot: Power down\r\n"

func TestConsoleQuiet(t *testing.T) {
	var out strings.Builder
	exits := 0
	c := &console{out: &out, onExit: func() { exits++ }}
	if err := c.copy(strings.NewReader(consoleStream)); err != nil {
		t.Fatal(err)
	}
	if !c.started || !c.found || c.code != 7 || exits != 1 {
		t.Fatalf("started %v found %v code %d exits %d", c.started, c.found, c.code, exits)
	}
	want := "=== RUN   TestX\n\n--- PASS: TestX\nno newline at end\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if len(c.early) != 3 || strings.Contains(strings.Join(c.early, ""), "\x1b") {
		t.Errorf("early lines %q: want 3, without control codes", c.early)
	}
}

func TestConsoleVerbose(t *testing.T) {
	var out strings.Builder
	c := &console{out: &out, verbose: true}
	if err := c.copy(strings.NewReader(consoleStream)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"SeaBIOS", "Linux version", "--- PASS: TestX\n", "reboot: Power down"} {
		if !strings.Contains(got, want) {
			t.Errorf("verbose output lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"\x1b", "\r", "VMTEST-EXIT", "VMTEST-START"} {
		if strings.Contains(got, bad) {
			t.Errorf("verbose output has %q:\n%s", bad, got)
		}
	}
}

func TestConsoleNoStart(t *testing.T) {
	var out strings.Builder
	c := &console{out: &out}
	stream := "Kernel panic - not syncing: VFS\r\nVMTEST-EXIT=0\r\n"
	if err := c.copy(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	// A marker before /init started cannot be the command's.
	if c.found || out.Len() != 0 || len(c.early) != 2 {
		t.Errorf("found %v, output %q, early %q", c.found, out.String(), c.early)
	}
}

func TestQEMUArgs(t *testing.T) {
	args := strings.Join(qemuArgs("amd64", "/k/vmlinux", "/t/initrd", false), " ")
	for _, want := range []string{"-no-reboot", "-nographic", "-m 1G", "-smp 2", "-accel tcg,thread=single", "-cpu max", "-kernel /k/vmlinux", "-initrd /t/initrd", "console=ttyS0 panic=-1 quiet"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args %q lack %q", args, want)
		}
	}
	if strings.Contains(strings.Join(qemuArgs("amd64", "k", "i", true), " "), "quiet") {
		t.Error("verbose run has quiet on the kernel command line")
	}
	if strings.Contains(args, "-M virt") {
		t.Error("amd64 guest on the arm virt machine")
	}
	arm := strings.Join(qemuArgs("arm64", "/k/Image", "/t/initrd", false), " ")
	for _, want := range []string{"-M virt", "-accel tcg,thread=single", "-cpu max", "-kernel /k/Image", "console=ttyAMA0 panic=-1 quiet"} {
		if !strings.Contains(arm, want) {
			t.Errorf("arm64 qemu args %q lack %q", arm, want)
		}
	}
}
