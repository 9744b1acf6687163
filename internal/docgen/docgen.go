// SPDX-License-Identifier: Apache-2.0

// Package docgen writes the documentation of a command's flags — the
// OPTIONS and SYNOPSIS of its man page, a Markdown reference, and bash,
// zsh and fish completions — from the pflag.FlagSet that declares them,
// so that none of them can miss a flag or disagree with --help.
//
// What a flag's value can be (a fixed list of words, a file, a PID …) is
// told with Complete, as a pflag annotation beside the flag's declaration.
package docgen

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Value kinds for Complete.
const (
	Words = "words" // one of the given words
	Files = "files" // a file name
	Dirs  = "dirs"  // a directory name
	PIDs  = "pids"  // a process ID
	UIDs  = "uids"  // a user ID (numeric)
)

const annotation = "docgen_complete"

// Complete records what the value of flag name can be: kind, and for
// Words the words. It panics when fs has no such flag, a mistake in the
// program that any run of the docs test shows.
func Complete(fs *pflag.FlagSet, name, kind string, words ...string) {
	if err := fs.SetAnnotation(name, annotation, append([]string{kind}, words...)); err != nil {
		panic(fmt.Sprintf("docgen.Complete: %v", err))
	}
}

// Flag is one flag as the documents show it.
type Flag struct {
	Long, Short string
	Arg         string // name of its value ("" for a boolean flag)
	Optional    bool   // the value may be left out (--container)
	Usage       string
	Default     string // "" when the default is the zero value
	Kind        string // a value kind for completion, "" for none
	Words       []string
}

// Flags returns fs's visible flags in the order they are declared (or
// sorted, if fs.SortFlags).
func Flags(fs *pflag.FlagSet) []Flag {
	var flags []Flag
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		arg, usage := pflag.UnquoteUsage(f)
		fl := Flag{Long: f.Name, Short: f.Shorthand, Usage: usage}
		if f.Value.Type() != "bool" {
			fl.Arg = arg
			if !strings.Contains(f.Usage, "`") {
				// No `NAME` in the usage, so pflag named the type
				// ("string"): a number is N, anything else is named
				// after the flag.
				switch f.Value.Type() {
				case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
					fl.Arg = "N"
				case "duration":
					fl.Arg = "DURATION"
				default:
					fl.Arg = strings.ToUpper(f.Name)
				}
			}
			fl.Optional = f.NoOptDefVal != ""
			if !zeroDefault(f) {
				fl.Default = f.DefValue
			}
		}
		if a := f.Annotations[annotation]; len(a) > 0 {
			fl.Kind, fl.Words = a[0], a[1:]
		}
		flags = append(flags, fl)
	})
	return flags
}

// zeroDefault reports whether a flag's default is its type's zero value,
// which the documents leave out (as pflag's help does).
func zeroDefault(f *pflag.Flag) bool {
	switch f.DefValue {
	case "", "0", "0s", "false", "[]", "<nil>":
		return true
	}
	return false
}

// Spelling returns "-t, --timestamp" or "--pid PID" forms for text.
func (f Flag) Spelling() string {
	s := "--" + f.Long
	if f.Short != "" {
		s = "-" + f.Short + ", " + s
	}
	switch {
	case f.Arg != "" && f.Optional:
		s += "[=" + f.Arg + "]"
	case f.Arg != "":
		s += " " + f.Arg
	}
	return s
}
