// SPDX-License-Identifier: Apache-2.0

package docgen

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Markdown renders the flag reference: head (Markdown, as is), then a
// table of every flag.
func Markdown(head string, fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString(head)
	b.WriteString("| flag | value | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, f := range Flags(fs) {
		spell := "`--" + f.Long + "`"
		if f.Short != "" {
			spell = "`-" + f.Short + "`, " + spell
		}
		val := ""
		switch {
		case f.Arg != "" && f.Optional:
			val = "`[=" + f.Arg + "]`"
		case f.Arg != "":
			val = "`" + f.Arg + "`"
		}
		if len(f.Words) > 0 {
			val += " (" + strings.Join(f.Words, ", ") + ")"
		}
		def := ""
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", spell, cell(val), def, cell(sentence(f.Usage)))
	}
	return b.String()
}

// cell escapes what would end a table cell or line.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
