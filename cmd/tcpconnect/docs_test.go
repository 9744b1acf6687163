// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/docgen"
)

var updateDocs = flag.Bool("update-docs", false, "write the generated documentation (go generate)")

const (
	docsDir     = "../../docs"
	generator   = "`go generate ./cmd/tcpconnect`"
	manTemplate = docsDir + "/man/tcpconnect.8.in"
)

const flagsHead = `<!-- SPDX-License-Identifier: Apache-2.0 -->
<!-- Generated from the flag declarations (cmd/tcpconnect/flags.go) by ` + generator + `; do not edit. -->
# tcpconnect flags

Every flag of ` + "`tcpconnect`" + `, as declared in the code; the same list is in
` + "`tcpconnect --help`" + `, the man page ([tcpconnect.8](man/tcpconnect.8): ` + "`man -l docs/man/tcpconnect.8`" + `) and
the shell completions ([completions/](completions/)). A value-less flag is a switch.

`

// docs renders every generated document, by path under docs/.
func docs(t *testing.T) map[string]string {
	t.Helper()
	fs, _ := newFlagSet()
	tmpl, err := os.ReadFile(manTemplate)
	if err != nil {
		t.Fatal(err)
	}
	man, err := docgen.Man(string(tmpl), fs)
	if err != nil {
		t.Fatal(err)
	}
	// The template's own comment (SPDX, "edit this file") is not the
	// generated page's.
	var lines []string
	for i, l := range strings.SplitAfter(man, "\n") {
		if i == 0 {
			lines = append(lines, l, `.\" Generated from man/tcpconnect.8.in and the flag declarations (cmd/tcpconnect/flags.go)`+"\n", `.\" by `+generator+"; do not edit.\n")
			continue
		}
		if strings.HasPrefix(l, `.\"`) && len(lines) < 9 {
			continue
		}
		lines = append(lines, l)
	}
	return map[string]string{
		"man/tcpconnect.8":            strings.Join(lines, ""),
		"flags.md":                    docgen.Markdown(flagsHead, fs),
		"completions/tcpconnect.bash": docgen.Bash(fs, generator),
		"completions/_tcpconnect":     docgen.Zsh(fs, generator),
		"completions/tcpconnect.fish": docgen.Fish(fs, generator),
	}
}

// TestDocs fails when a generated document differs from what the flags
// make now; with -update-docs (go generate) it writes them.
func TestDocs(t *testing.T) {
	for name, want := range docs(t) {
		path := filepath.Join(docsDir, name)
		if *updateDocs {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v: run %s", err, generator)
			continue
		}
		if string(got) != want {
			t.Errorf("docs/%s is stale: run %s and commit it", name, generator)
		}
	}
}

// TestDocsCoverEveryFlag checks the generator's output itself: every flag
// of the command line, with its spellings, in every document.
func TestDocsCoverEveryFlag(t *testing.T) {
	fs, _ := newFlagSet()
	d := docs(t)
	for _, f := range docgen.Flags(fs) {
		for name, text := range d {
			long := "--" + f.Long
			switch {
			case strings.HasSuffix(name, ".8"):
				long = `\-\-` + strings.ReplaceAll(f.Long, "-", `\-`)
			case strings.HasSuffix(name, ".fish"):
				long = " -l " + f.Long + " "
			}
			if !strings.Contains(text, long) {
				t.Errorf("docs/%s lacks %s", name, long)
			}
		}
	}
	if n := strings.Count(d["man/tcpconnect.8"], "\n.TP\n\\fB"); n < len(docgen.Flags(fs)) {
		t.Errorf("man page has %d option entries for %d flags", n, len(docgen.Flags(fs)))
	}
}

// requireTool finds a program the check needs; CI (which sets
// TCPCONNECT_REQUIRE_PRIVILEGED) installs them, so there it must exist.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("%s not found: install package %s", name, pkg)
		}
		t.Skipf("%s not found (package %s)", name, pkg)
	}
	return p
}

// TestManPage renders the committed page as man(1) does, and with groff
// and mandoc's linter: any warning fails.
func TestManPage(t *testing.T) {
	page := filepath.Join(docsDir, "man", "tcpconnect.8")
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stderr.String(), stdout.String())
		}
		return stdout.String()
	}
	t.Run("man", func(t *testing.T) {
		man := requireTool(t, "man", "man-db")
		out := run([]string{"MANWIDTH=80", "LC_ALL=C.UTF-8"}, man, "--warnings", "-E", "UTF-8", "-l", page)
		for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "FIELDS", "RESULTS", "OVERHEAD", "SEE ALSO", "--min-latency MS", "--container[=ID-PREFIX]"} {
			if !strings.Contains(out, want) {
				t.Errorf("rendered page lacks %q", want)
			}
		}
	})
	t.Run("groff", func(t *testing.T) {
		groff := requireTool(t, "groff", "groff")
		run(nil, groff, "-man", "-Tutf8", "-ww", "-z", page)
	})
	t.Run("mandoc", func(t *testing.T) {
		mandoc := requireTool(t, "mandoc", "mandoc")
		out := run(nil, mandoc, "-T", "lint", "-W", "warning", page)
		if out != "" {
			t.Errorf("mandoc -T lint:\n%s", out)
		}
	})
}

// shellOut runs a shell script and returns its output.
func shellOut(t *testing.T, shell string, args ...string) string {
	t.Helper()
	cmd := exec.Command(shell, args...)
	cmd.Dir = docsDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	return string(out)
}

// TestCompletions asks each shell for completions, through the committed
// files: flag names, and the values of a flag with fixed words.
func TestCompletions(t *testing.T) {
	t.Run("bash", func(t *testing.T) {
		bash := requireTool(t, "bash", "bash")
		const lib = "/usr/share/bash-completion/bash_completion"
		if _, err := os.Stat(lib); err != nil {
			if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
				t.Fatalf("%v: install package bash-completion", err)
			}
			t.Skipf("%v (package bash-completion)", err)
		}
		out := shellOut(t, bash, "-c", `source `+lib+` && source completions/tcpconnect.bash || exit 1
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(($#-1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _tcpconnect; echo "$*=>${COMPREPLY[*]}"; }
comp tcpconnect --back
comp tcpconnect --backend ""
comp tcpconnect --output=j
comp tcpconnect --cont
comp tcpconnect -t --min-l`)
		for _, want := range []string{
			"tcpconnect --back=>--backend\n",
			"tcpconnect --backend =>auto fentry kprobe sockops\n",
			"tcpconnect --output=j=>json\n",
			"tcpconnect --cont=>--container --container=\n",
			"tcpconnect -t --min-l=>--min-latency\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("bash: want %q in\n%s", want, out)
			}
		}
	})
	t.Run("fish", func(t *testing.T) {
		fish := requireTool(t, "fish", "fish")
		out := shellOut(t, fish, "--no-config", "-c", `source completions/tcpconnect.fish; complete -C"tcpconnect --back"; complete -C"tcpconnect --backend "; complete -C"tcpconnect -t --min-l"`)
		for _, want := range []string{"--backend\thow to hook", "\nauto\t", "\nsockops\t", "--min-latency\tonly attempts"} {
			if !strings.Contains(out, want) {
				t.Errorf("fish: want %q in\n%s", want, out)
			}
		}
	})
	t.Run("zsh", func(t *testing.T) {
		zsh := requireTool(t, "zsh", "zsh")
		// Without a line editor zsh cannot be asked to complete; check
		// instead that the file parses and hands _arguments one spec per
		// spelling, as its brace expansion makes them.
		out := shellOut(t, zsh, "-f", "-c", `_arguments() { print -rl -- "$@" }; source completions/_tcpconnect`)
		fs, _ := newFlagSet()
		specs := strings.Split(strings.TrimSpace(out), "\n")
		for _, f := range docgen.Flags(fs) {
			var found bool
			for _, s := range specs {
				// "(-t --timestamp)--timestamp[...]": the exclusion list first.
				if i := strings.Index(s, ")"); strings.HasPrefix(s, "(") && i > 0 {
					s = s[i+1:]
				}
				if strings.HasPrefix(s, "--"+f.Long+"[") || strings.HasPrefix(s, "--"+f.Long+"=") {
					found = true
				}
			}
			if !found {
				t.Errorf("zsh: no spec for --%s in\n%s", f.Long, out)
			}
		}
		for _, want := range []string{"--backend=[how to hook the kernel: BACKEND is auto, fentry, kprobe or sockops]:BACKEND:(auto fentry kprobe sockops)", "(-p --pid)-p+[trace this PID only]:PID:_pids"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("zsh: want %q in\n%s", want, out)
			}
		}
	})
}
