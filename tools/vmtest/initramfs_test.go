// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestShellQuote(t *testing.T) {
	args := []string{"plain", "a b", "it's", `"q"`, "$HOME", "`id`", "back\\slash", "", "new\nline"}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	// Let a real shell parse the quoting back.
	script := `for a in ` + strings.Join(quoted, " ") + `; do printf '%s\0' "$a"; done`
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !reflect.DeepEqual(got, args) {
		t.Errorf("sh read back %q, want %q", got, args)
	}
}

func TestInitScript(t *testing.T) {
	s, err := initScript([]string{"/lib/modules/6.1/veth.ko"}, []string{"A=b c"}, []string{"/smoke.test", "-test.run", "X|Y"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#!/bin/sh\n",
		"printf '\\n" + startMarker + "\\n'",
		"m -t bpf bpf /sys/fs/bpf",
		"m -t tracefs tracefs /sys/kernel/tracing",
		"m -t cgroup2 cgroup2 /sys/fs/cgroup",
		"ip link set lo up",
		"insmod '/lib/modules/6.1/veth.ko'",
		"export 'A=b c'\n",
		"'/smoke.test' '-test.run' 'X|Y' </dev/null\n",
		exitMarker,
		"poweroff -f",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Errorf("init script does not parse: %v: %s", err, out)
	}
	if _, err := initScript(nil, []string{"1BAD=x"}, []string{"true"}); err == nil {
		t.Error("accepted a bad -env name")
	}
	if _, err := initScript(nil, nil, nil); err == nil {
		t.Error("accepted an empty command")
	}
}

func TestParseFileArg(t *testing.T) {
	for in, want := range map[string]guestFile{
		"/tmp/smoke.test":        {host: "/tmp/smoke.test", guest: "/smoke.test"},
		"/tmp/smoke.test:/bin/t": {host: "/tmp/smoke.test", guest: "/bin/t"},
		"rel/prog:/x/prog":       {host: "rel/prog", guest: "/x/prog"},
		"/tmp/smoke.test:":       {host: "/tmp/smoke.test", guest: "/smoke.test"},
	} {
		got, err := parseFileArg(in)
		if err != nil || got != want {
			t.Errorf("parseFileArg(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ":/x", "/a:relative"} {
		if _, err := parseFileArg(bad); err == nil {
			t.Errorf("parseFileArg(%q) accepted", bad)
		}
	}
}

func TestResolveCommand(t *testing.T) {
	a := newArchive()
	for _, err := range []error{
		a.Symlink("sbin/ip", "/bin/busybox"),
		a.Symlink("bin/sh", "/bin/busybox"),
		a.Bytes("usr/sbin/nft", 0o755, nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"nft", "list"}, []string{"/usr/sbin/nft", "list"}},
		{[]string{"sh", "-c", "x"}, []string{"sh", "-c", "x"}},
		{[]string{"/smoke.test"}, []string{"/smoke.test"}},
		{[]string{"unknown"}, []string{"unknown"}},
	} {
		if got := resolveCommand(a, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("resolveCommand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
