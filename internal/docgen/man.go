// SPDX-License-Identifier: Apache-2.0

package docgen

import (
	"fmt"
	"strings"
	"text/template"
	"unicode"

	"github.com/spf13/pflag"
)

// Man renders a man page from tmpl, a roff text/template. It fills in
// {{.Synopsis}} (the command and every flag, bracketed) and {{.Options}}
// (one .TP entry per flag: its spellings, its description and default).
func Man(tmpl string, fs *pflag.FlagSet) (string, error) {
	t, err := template.New("man").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("man page template: %w", err)
	}
	flags := Flags(fs)
	var syn, opts strings.Builder
	fmt.Fprintf(&syn, ".B %s\n", fs.Name())
	for _, f := range flags {
		spell := bold("--" + f.Long)
		if f.Short != "" {
			spell = bold("-" + f.Short)
		}
		switch {
		case f.Arg != "" && f.Optional:
			spell += "[=" + italic(f.Arg) + "]"
		case f.Arg != "":
			// An unbreakable space: the value stays on its option's line.
			spell += `\ ` + italic(f.Arg)
		}
		fmt.Fprintf(&syn, "[%s]\n", spell)

		fmt.Fprintf(&opts, ".TP\n%s\n%s\n", manSpelling(f), roffLine(sentence(f.Usage)))
		if f.Default != "" {
			fmt.Fprintf(&opts, "Default: %s.\n", bold(f.Default))
		}
	}
	var out strings.Builder
	err = t.Execute(&out, map[string]string{
		"Synopsis": strings.TrimSuffix(syn.String(), "\n"),
		"Options":  strings.TrimSuffix(opts.String(), "\n"),
	})
	if err != nil {
		return "", fmt.Errorf("man page template: %w", err)
	}
	return out.String(), nil
}

func manSpelling(f Flag) string {
	s := bold("--" + f.Long)
	if f.Short != "" {
		s = bold("-"+f.Short) + ", " + s
	}
	switch {
	case f.Arg != "" && f.Optional:
		s += "[=" + italic(f.Arg) + "]"
	case f.Arg != "":
		s += " " + italic(f.Arg)
	}
	return s
}

func bold(s string) string   { return `\fB` + roff(s) + `\fR` }
func italic(s string) string { return `\fI` + roff(s) + `\fR` }

// sentence capitalises the first letter and ends with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	s = string(r)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// roffLine escapes s as a line of roff text: a leading dot or quote would
// make it a request.
func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roff escapes backslashes, and writes the hyphens of options (-r,
// --min-latency) as \- so that they render as the ASCII hyphen-minus a
// user types; hyphens inside words (comma-separated) stay hyphens.
func roff(s string) string {
	var b strings.Builder
	inOption := false
	var prev rune = ' '
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
			inOption = false
		case r == '-' && (inOption || !isWord(prev)):
			b.WriteString(`\-`)
			inOption = true
		case r == '-':
			b.WriteRune(r)
		default:
			if !isWord(r) {
				inOption = false
			}
			b.WriteRune(r)
		}
		prev = r
	}
	return b.String()
}

func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_'
}
