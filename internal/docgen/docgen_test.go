// SPDX-License-Identifier: Apache-2.0

package docgen

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func testFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("tool", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.BoolP("verbose", "v", false, "say more")
	fs.String("mode", "fast", "how to run: `MODE` is fast or slow")
	fs.Int("count", 0, "stop after this many")
	fs.String("tag", "", "add a column; --tag=`PREFIX` also filters")
	fs.Lookup("tag").NoOptDefVal = "-"
	fs.String("secret", "", "not shown")
	_ = fs.MarkHidden("secret")
	Complete(fs, "mode", Words, "fast", "slow")
	return fs
}

func TestFlags(t *testing.T) {
	got := Flags(testFlags())
	want := []Flag{
		{Long: "verbose", Short: "v", Usage: "say more"},
		{Long: "mode", Arg: "MODE", Usage: "how to run: MODE is fast or slow", Default: "fast", Kind: Words, Words: []string{"fast", "slow"}},
		{Long: "count", Arg: "N", Usage: "stop after this many"},
		{Long: "tag", Arg: "PREFIX", Optional: true, Usage: "add a column; --tag=PREFIX also filters"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d flags, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Long != w.Long || g.Short != w.Short || g.Arg != w.Arg || g.Optional != w.Optional ||
			g.Usage != w.Usage || g.Default != w.Default || g.Kind != w.Kind || strings.Join(g.Words, " ") != strings.Join(w.Words, " ") {
			t.Errorf("flag %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestCompleteUnknownFlag(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Complete on a missing flag did not panic")
		}
	}()
	Complete(testFlags(), "nope", Files)
}

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		"-r and --min-latency":     `\-r and \-\-min\-latency`,
		"comma-separated (-x, -6)": `comma-separated (\-x, \-6)`,
		`a \ backslash`:            `a \e backslash`,
		"--container=ID-PREFIX":    `\-\-container=ID-PREFIX`,
		"x-y --a-b-c":              `x-y \-\-a\-b\-c`,
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
	if got := roffLine(".start"); got != `\&.start` {
		t.Errorf("roffLine: %q", got)
	}
}

func TestMan(t *testing.T) {
	out, err := Man(".SH SYNOPSIS\n{{.Synopsis}}\n.SH OPTIONS\n{{.Options}}\n", testFlags())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		".B tool\n[\\fB\\-v\\fR]\n[\\fB\\-\\-mode\\fR\\ \\fIMODE\\fR]\n",
		"[\\fB\\-\\-tag\\fR[=\\fIPREFIX\\fR]]\n",
		".TP\n\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR\nSay more.\n",
		".TP\n\\fB\\-\\-mode\\fR \\fIMODE\\fR\nHow to run: MODE is fast or slow.\nDefault: \\fBfast\\fR.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Error("a hidden flag is documented")
	}
	if _, err := Man("{{.Nope}}", testFlags()); err == nil {
		t.Error("a template naming an unknown field rendered")
	}
}

func TestMarkdownEscapes(t *testing.T) {
	fs := pflag.NewFlagSet("tool", pflag.ContinueOnError)
	fs.String("sep", "", "a | b")
	out := Markdown("", fs)
	if !strings.Contains(out, `| A \| b. |`) {
		t.Errorf("pipe not escaped:\n%s", out)
	}
}
