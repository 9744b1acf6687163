// SPDX-License-Identifier: Apache-2.0

// Package buildinfo says which tcpconnect this is: its version, the commit
// it was built from and the Go that built it, for --version and the
// tcpconnect_info metric.
//
// The release build sets the version (and, from a source tarball without
// .git, the commit) at link time:
//
//	go build -ldflags "-X github.com/tcpconnect/tcpconnect/internal/buildinfo.version=v1.2.3" ./cmd/tcpconnect
//
// Otherwise they come from what the Go toolchain recorded: the module
// version for `go install github.com/tcpconnect/tcpconnect/cmd/tcpconnect@v1.2.3`,
// or, in a git checkout, the tag on HEAD (a pseudo-version between tags)
// and the vcs.revision and vcs.modified build settings.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X; empty means "from the build info".
var (
	version string
	commit  string
)

// Info describes a build. Unknown fields are "unknown", never empty, so
// that they read well in a label or a line.
type Info struct {
	Version   string // v1.2.3, a Go pseudo-version, or "(devel)"
	Commit    string // full git hash, "-dirty" appended for a modified tree
	GoVersion string // go1.26.8
	Platform  string // linux/amd64
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version, commit)
}

func fromBuildInfo(bi *debug.BuildInfo, version, commit string) Info {
	info := Info{
		Version:   version,
		Commit:    commit,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		var rev string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.Commit == "" && rev != "" {
			info.Commit = rev
			if modified {
				info.Commit += "-dirty"
			}
		}
		if info.Commit == "" {
			// go install from the module proxy records no VCS settings,
			// but a pseudo-version ends in the commit's first 12 hex digits.
			info.Commit = pseudoCommit(bi.Main.Version)
		}
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// pseudoCommit returns the commit abbreviation of a Go pseudo-version
// (v0.0.0-20260102150405-0123456789ab, with an optional +dirty), or "".
func pseudoCommit(v string) string {
	v, _, _ = strings.Cut(v, "+")
	i := strings.LastIndexByte(v, '-')
	if i < 0 || len(v)-i-1 != 12 {
		return ""
	}
	h := v[i+1:]
	if strings.Trim(h, "0123456789abcdef") != "" {
		return ""
	}
	// The part before must end in a 14-digit UTC timestamp.
	rest := v[:i]
	j := strings.LastIndexAny(rest, "-.")
	if j < 0 || len(rest)-j-1 != 14 || strings.Trim(rest[j+1:], "0123456789") != "" {
		return ""
	}
	return h
}

// String is the --version line: "tcpconnect v1.2.3 (commit 0123abc…, go1.26.8, linux/amd64)".
func (i Info) String() string {
	return "tcpconnect " + i.Version + " (commit " + i.Commit + ", " + i.GoVersion + ", " + i.Platform + ")"
}
