// SPDX-License-Identifier: Apache-2.0

package docgen

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// header is the comment every generated completion starts with.
func header(shell, cmd, source string) string {
	return fmt.Sprintf("# %s completion for %s. Generated from its flag declarations\n# by %s; do not edit.\n", shell, cmd, source)
}

// Bash renders a completion for bash with the bash-completion package
// (_init_completion, _filedir, _pids, _uids), as Debian installs it in
// /usr/share/bash-completion/completions/. source names the generator.
func Bash(fs *pflag.FlagSet, source string) string {
	name := fs.Name()
	fn := "_" + strings.ReplaceAll(name, "-", "_")
	var b strings.Builder
	b.WriteString(header("bash", name, source))
	fmt.Fprintf(&b, "\n%s()\n{\n\tlocal cur prev words cword split\n\t_init_completion -s || return\n\n\tcase $prev in\n", fn)
	var words []string
	byAction := map[string][]string{}
	var actions []string
	for _, f := range Flags(fs) {
		spells := []string{"--" + f.Long}
		if f.Short != "" {
			spells = []string{"-" + f.Short, "--" + f.Long}
		}
		words = append(words, spells...)
		if f.Optional {
			// Its value follows "=" only; _init_completion -s splits
			// that off, and "$split && return" below handles it.
			words = append(words, "--"+f.Long+"=")
			continue
		}
		if f.Arg == "" {
			continue
		}
		var action string
		switch f.Kind {
		case Words:
			action = "COMPREPLY=($(compgen -W '" + strings.Join(f.Words, " ") + "' -- \"$cur\"))"
		case Files:
			action = "_filedir"
		case Dirs:
			action = "_filedir -d"
		case PIDs:
			action = "_pids"
		case UIDs:
			action = "_uids"
		default:
			action = ": # a value, nothing to offer"
		}
		if _, ok := byAction[action]; !ok {
			actions = append(actions, action)
		}
		byAction[action] = append(byAction[action], spells...)
	}
	for _, a := range actions {
		fmt.Fprintf(&b, "\t%s)\n\t\t%s\n\t\treturn\n\t\t;;\n", strings.Join(byAction[a], " | "), a)
	}
	b.WriteString("\tesac\n\n\t$split && return\n\n")
	b.WriteString("\tif [[ $cur == -* ]]; then\n")
	fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W '%s' -- \"$cur\"))\n", strings.Join(words, " "))
	b.WriteString("\t\t[[ ${COMPREPLY-} == *= ]] && compopt -o nospace\n\tfi\n")
	fmt.Fprintf(&b, "} &&\n\tcomplete -F %s %s\n", fn, name)
	return b.String()
}

// Zsh renders a completion function for zsh's completion system, as
// installed in /usr/share/zsh/vendor-completions/_NAME.
func Zsh(fs *pflag.FlagSet, source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %s\n", fs.Name())
	b.WriteString(header("zsh", fs.Name(), source))
	b.WriteString("\n_arguments -s -S : \\\n")
	flags := Flags(fs)
	for i, f := range flags {
		desc := "[" + zshEscape(f.Usage) + "]"
		long := "--" + f.Long
		var value string
		switch {
		case f.Arg == "":
		case f.Optional:
			long += "=-" // the value only after "="
			value = ":"  // "::" makes it optional
		default:
			long += "="
		}
		if f.Arg != "" {
			value += ":" + strings.ReplaceAll(zshEscape(f.Arg), ":", `\:`) + ":" + zshAction(f)
		}
		var spec string
		if f.Short != "" {
			short := "-" + f.Short
			if f.Arg != "" && !f.Optional {
				short += "+"
			}
			spec = fmt.Sprintf("'(-%s --%s)'{%s,%s}'%s%s'", f.Short, f.Long, short, long, desc, value)
		} else {
			spec = "'" + long + desc + value + "'"
		}
		b.WriteString("\t" + spec)
		if i < len(flags)-1 {
			b.WriteString(" \\")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func zshAction(f Flag) string {
	switch f.Kind {
	case Words:
		return "(" + strings.Join(f.Words, " ") + ")"
	case Files:
		return "_files"
	case Dirs:
		return "_files -/"
	case PIDs:
		return "_pids"
	}
	return " " // a message only: nothing to complete
}

// zshEscape quotes s for a spec inside single quotes: brackets end a
// description; a colon would end a value's message.
func zshEscape(s string) string {
	return strings.NewReplacer(`'`, `'\''`, `\`, `\\`, "[", `\[`, "]", `\]`).Replace(s)
}

// Fish renders completions for fish, as installed in
// /usr/share/fish/vendor_completions.d/NAME.fish.
func Fish(fs *pflag.FlagSet, source string) string {
	name := fs.Name()
	var b strings.Builder
	b.WriteString(header("fish", name, source))
	// No file names unless a flag asks for one: the command takes no
	// arguments.
	fmt.Fprintf(&b, "complete -c %s -f\n", name)
	for _, f := range Flags(fs) {
		line := "complete -c " + name
		if f.Short != "" {
			line += " -s " + f.Short
		}
		line += " -l " + f.Long
		if f.Arg != "" && !f.Optional {
			switch f.Kind {
			case Words:
				line += " -x -a " + fishQuote(strings.Join(f.Words, " "))
			case Files:
				line += " -r -F"
			case Dirs:
				line += " -x -a '(__fish_complete_directories)'"
			case PIDs:
				line += " -x -a '(__fish_complete_pids)'"
			default:
				line += " -x"
			}
		}
		line += " -d " + fishQuote(f.Usage)
		b.WriteString(line + "\n")
	}
	return b.String()
}

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
