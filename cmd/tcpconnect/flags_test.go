// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/buildinfo"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/tracer"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-p", "abc"}, {"-p", "0"}, {"-P", "70000"}, {"-P", "80,x"}, {"-P", "0"},
		{"-4", "-6"}, {"-u", "-1"}, {"--backend", "ebpf"}, {"--buffer-size", "3K"},
		{"--buffer-size", "big"}, {"--nope"}, {"extra"}, {"-c", "-r"}, {"-c", "-w"}, {"--min-latency", "-1"},
		{"--max-pending", "0"}, {"--container", "abc"}, {"--container=xyz"}, {"--netns", "/nonexistent"},
		{"--exe", "bin/curl"}, {"--exe", "/usr/../bin/curl"}, {"--comm", "0123456789abcdef"}, {"-W", "--json"},
		// Numbers that once wrapped, misled or cost gigabytes.
		{"--max-pending", "4294967297"}, {"--max-pending", "10000000"}, {"--max-pending", "-1"},
		{"-P", portList(65)},
		{"--netns", "/etc/passwd"}, {"--netns", "/proc/self/ns/mnt"}, {"--netns", "0"}, {"--netns", "/proc/self/ns"},
		{"--min-latency", "Inf"}, {"--min-latency", "-Inf"}, {"--min-latency", "NaN"}, {"--min-latency", "1e300"},
		{"--dns-cache-size", "0"}, {"--dns-cache-size", "1000000000"},
		{"--buffer-size", "9223372036854775807M"}, {"--buffer-size", "2048M"}, {"--buffer-size", "8796093022208K"},
		{"-p", "4294967296"}, {"-u", "4294967296"}, {"--metrics-addr", ":65536"},
	} {
		var out, errb bytes.Buffer
		code := realMain(args, &out, &errb)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		first, rest, _ := strings.Cut(errb.String(), "\n")
		if !strings.HasPrefix(first, "tcpconnect: ") || rest != "" {
			t.Errorf("%v: stderr %q, want one error line", args, errb.String())
		}
		if strings.Contains(errb.String(), "goroutine") || out.Len() != 0 {
			t.Errorf("%v: stdout %q stderr %q", args, out.String(), errb.String())
		}
	}
}

// portList is "1,2,...,n".
func portList(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// TestBoundsAccepted: the largest values allowed parse to themselves;
// ports given twice count once.
func TestBoundsAccepted(t *testing.T) {
	o, err := parseFlags([]string{"--max-pending", strconv.Itoa(maxMaxPending), "-P", portList(64) + ",1,2",
		"--min-latency", "86400000", "--dns-cache-size", strconv.Itoa(maxDNSCacheSize), "--buffer-size", "1024M"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.tracer.MaxPending != maxMaxPending || len(o.tracer.Ports) != 64 || o.tracer.MinLatency != 24*time.Hour ||
		o.dnsCacheSize != maxDNSCacheSize || o.tracer.BufferSize != 1<<30 {
		t.Errorf("parsed %+v", o)
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"-h"}, &out, &errb); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	if !strings.Contains(out.String(), "--timestamp") {
		t.Errorf("-h printed %q", out.String())
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-tU", "-p", "181", "-P", "80,81", "-u", "1000", "-4", "-L", "--json", "--backend", "sockops", "--buffer-size", "8M"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.tracer
	if !o.stamp || !o.uidCol || !o.json || c.PID != 181 || !c.UIDFilter || c.UID != 1000 || len(c.Ports) != 2 ||
		c.Ports[0] != 80 || c.Ports[1] != 81 || c.Family != event.FamilyIPv4 ||
		c.Backend != tracer.BackendSockops || c.BufferSize != 8<<20 || c.Outcomes || c.Count || c.SyncErrors {
		t.Errorf("parsed %+v", o)
	}
	o, err = parseFlags([]string{"--sync-errors"}, nil)
	if err != nil || !o.tracer.SyncErrors {
		t.Errorf("--sync-errors: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--failed", "--min-latency", "2.5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.results || !o.tracer.Outcomes || !o.tracer.OnlyFailed || o.tracer.MinLatency.Microseconds() != 2500 || o.tracer.UIDFilter {
		t.Errorf("parsed %+v", o)
	}
	o, err = parseFlags([]string{"-w"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.why || !o.results || !o.tracer.Outcomes {
		t.Errorf("-w parsed %+v", o)
	}
	o, err = parseFlags([]string{"-c6"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.tracer.Count || o.tracer.Family != event.FamilyIPv6 {
		t.Errorf("-c6 parsed %+v", o)
	}
}

func TestContextFlags(t *testing.T) {
	o, err := parseFlags([]string{"--container", "-x", "--netns", "4026531840", "--cgroup", "/system.slice"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.container || o.containerPrefix != "" || !o.extended || o.tracer.Netns != 4026531840 || o.cgroupPath != "/system.slice" {
		t.Errorf("parsed %+v", o)
	}
	o, err = parseFlags([]string{"--container=4F1C", "--netns", "/proc/self/ns/net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.container || o.containerPrefix != "4f1c" || o.tracer.Netns == 0 {
		t.Errorf("parsed %+v", o)
	}
}

// TestWhoFlags: the tracer follows processes only where they are printed
// or filtered on.
func TestWhoFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false}, {[]string{"-W"}, true}, {[]string{"--json"}, true}, {[]string{"-c"}, false},
		{[]string{"-q"}, false}, {[]string{"-W", "-c"}, false},
	} {
		o, err := parseFlags(tc.args, nil)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if o.tracer.Processes != tc.want {
			t.Errorf("%q: Processes %v, want %v", tc.args, o.tracer.Processes, tc.want)
		}
	}
	o, err := parseFlags([]string{"--exe", "/usr/bin/curl", "--comm", "sshd"}, nil)
	if err != nil || o.tracer.Exe != "/usr/bin/curl" || o.tracer.Comm != "sshd" {
		t.Errorf("--exe --comm: %+v %v", o, err)
	}
}

// parseVersionLine splits "tcpconnect VERSION (commit COMMIT, GOVERSION,
// OS/ARCH)".
func parseVersionLine(line string) (version, commit, goVersion string, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "tcpconnect ")
	if !ok || strings.Contains(rest, "\n") {
		return "", "", "", false
	}
	version, rest, ok = strings.Cut(rest, " (commit ")
	if !ok || !strings.HasSuffix(rest, ")") {
		return "", "", "", false
	}
	parts := strings.Split(strings.TrimSuffix(rest, ")"), ", ")
	if len(parts) != 3 || parts[1] == "" || parts[2] != runtime.GOOS+"/"+runtime.GOARCH {
		return "", "", "", false
	}
	return version, parts[0], parts[1], version != "" && parts[0] != ""
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"--version"}, &out, &errb); code != 0 {
		t.Errorf("--version: exit %d", code)
	}
	if errb.Len() != 0 {
		t.Errorf("--version wrote to stderr: %q", errb.String())
	}
	want := buildinfo.Get()
	v, c, g, ok := parseVersionLine(out.String())
	if !ok || v != want.Version || c != want.Commit || g != runtime.Version() {
		t.Errorf("--version printed %q; want version %q, commit %q, %s", out.String(), want.Version, want.Commit, runtime.Version())
	}
	// With other flags too, it answers and exits; a bad flag is still an error.
	out.Reset()
	if code := realMain([]string{"-t", "--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "tcpconnect ") {
		t.Errorf("-t --version: exit %d, %q", code, out.String())
	}
	if code := realMain([]string{"--version=maybe"}, &out, &errb); code != 2 {
		t.Errorf("--version=maybe: exit %d, want 2", code)
	}
}
