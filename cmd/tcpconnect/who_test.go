// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"github.com/tcpconnect/tcpconnect/internal/tracer"
)

// TestWhoEndToEnd: a program at a hostile path, run with hostile
// arguments, connects and exits at once; the built tool names it in JSON
// (exe, args cut and marked, parent, user) and in the -W table, on one
// line, escaped; --exe keeps it and drops others.
func TestWhoEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	ap := listener(t, "127.0.0.1:0")
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := testutil.CopyTestBinary(t, filepath.Join(base, "a dir", "ünï\xff\x1b[2J\nx"), "prog")
	argv := []string{"\x1b]0;pwned\x07", "two\nlines", "", strings.Repeat("B", 10*1024)}
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	full := strings.Join(argv, "\x00") + "\x00"
	wantArgs := strings.Split(full[:tracer.ArgsMax], "\x00")

	t.Run("json", func(t *testing.T) {
		p := startTool(t, "--json", "-P", strconv.Itoa(int(ap.Port())))
		ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv})
		res := ch.Result()
		line := p.waitLine(t, `"sport":`+strconv.Itoa(int(res.Sport))+",")
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		esc := escaped
		args, _ := m["args"].([]any)
		if m["exe"] != esc(path) || m["args_truncated"] != true || len(args) != len(wantArgs) ||
			m["parent_exe"] != esc(self) || m["user"] != root.Username {
			t.Errorf("line %s\nwant exe %q, %d args, parent_exe %q, user %q", line, esc(path), len(wantArgs), esc(self), root.Username)
		}
		for i := range min(len(args), len(wantArgs)) {
			if args[i] != esc(wantArgs[i]) {
				t.Errorf("args[%d] = %q, want %q", i, args[i], esc(wantArgs[i]))
			}
		}
		p.stop(t, syscall.SIGINT)
	})

	t.Run("table", func(t *testing.T) {
		p := startTool(t, "-W", "-P", strconv.Itoa(int(ap.Port())))
		header := p.waitLine(t, "PCOMM", "EXE ARGS")
		ch := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv})
		res := ch.Result()
		line := p.waitLine(t, " "+strconv.Itoa(int(res.Sport))+" ")
		if strings.ContainsAny(line, "\x1b\a\n") {
			t.Errorf("raw control characters in %q", line)
		}
		want := strings.ReplaceAll(escaped(path), " ", `\x20`) + ` \x1b]0;pwned\x07 two\x0alines "" B`
		if !strings.Contains(line, "  "+want) || !strings.HasSuffix(line, " bytes]") {
			t.Errorf("row %q\nwant %q … [+N bytes]", line, want)
		}
		if f := strings.Fields(line); len(f) < 5 || f[3] != root.Username {
			t.Errorf("USER column of %q, want %s (header %q)", line, root.Username, header)
		}
		p.stop(t, syscall.SIGINT)
	})

	t.Run("exe-filter", func(t *testing.T) {
		p := startTool(t, "--json", "--exe", path, "-P", strconv.Itoa(int(ap.Port())))
		other := testutil.StartChild(t, ap, testutil.ExecChild{}).Result()
		wanted := testutil.StartChild(t, ap, testutil.ExecChild{Path: path, Argv: argv}).Result()
		line := p.waitLine(t, `"sport":`+strconv.Itoa(int(wanted.Sport))+",")
		if strings.Contains(line, `"sport":`+strconv.Itoa(int(other.Sport))+",") {
			t.Errorf("--exe let another program through: %s", line)
		}
		p.stop(t, syscall.SIGINT)
		// Everything the tool printed: only the wanted child's line.
		for l := range p.lines {
			if strings.Contains(l, `"sport":`+strconv.Itoa(int(other.Sport))+",") {
				t.Errorf("--exe let another program through: %s", l)
			}
		}
	})
}

// escaped is the escaping the output promises for text from the traced
// system, written here again as the test's ground truth: printable
// characters stay, a backslash doubles, anything else is \xNN per byte.
func escaped(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r != utf8.RuneError && unicode.IsPrint(r) && (r >= 0x20 && r != 0x7f):
			b.WriteString(s[i : i+n])
		default:
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		}
		i += n
	}
	return b.String()
}
