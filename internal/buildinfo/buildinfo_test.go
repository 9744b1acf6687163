// SPDX-License-Identifier: Apache-2.0

package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name             string
		bi               *debug.BuildInfo
		version, commit  string
		wantVer, wantCom string
	}{
		{"tagged checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(rev, "false")},
			"", "", "v1.2.3", rev},
		{"modified checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.4-0.20260102150405-0123456789ab+dirty"}, Settings: vcs(rev, "true")},
			"", "", "v1.2.4-0.20260102150405-0123456789ab+dirty", rev + "-dirty"},
		{"go install of a tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			"", "", "v1.2.3", "unknown"},
		{"go install of a commit", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260102150405-abcdef012345"}},
			"", "", "v0.0.0-20260102150405-abcdef012345", "abcdef012345"},
		{"no VCS, no module version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"", "", "(devel)", "unknown"},
		{"release build", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")},
			"v2.0.0", "", "v2.0.0", rev},
		{"release from a tarball", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"v2.0.0", "fedcba", "v2.0.0", "fedcba"},
		{"no build info", nil, "", "", "(devel)", "unknown"},
	} {
		got := fromBuildInfo(tc.bi, tc.version, tc.commit)
		if got.Version != tc.wantVer || got.Commit != tc.wantCom {
			t.Errorf("%s: version %q commit %q, want %q %q", tc.name, got.Version, got.Commit, tc.wantVer, tc.wantCom)
		}
		if tc.bi != nil && got.GoVersion != "go1.26.8" {
			t.Errorf("%s: Go version %q", tc.name, got.GoVersion)
		}
		if got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
			t.Errorf("%s: platform %q", tc.name, got.Platform)
		}
	}
}

func TestPseudoCommit(t *testing.T) {
	for v, want := range map[string]string{
		"v0.0.0-20260102150405-0123456789ab":         "0123456789ab",
		"v1.2.4-0.20260102150405-0123456789ab":       "0123456789ab",
		"v1.2.4-rc.1.0.20260102150405-0123456789ab":  "0123456789ab",
		"v1.2.4-0.20260102150405-0123456789ab+dirty": "0123456789ab",
		"v1.2.3":              "",
		"v1.2.3-rc1":          "",
		"v1.2.3-0123456789ab": "",
		"(devel)":             "",
		"":                    "",
	} {
		if got := pseudoCommit(v); got != want {
			t.Errorf("pseudoCommit(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestLinkerFlags builds a program with the release build's -X flags and
// checks that they win over the build info.
func TestLinkerFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "v")
	pkg := "github.com/tcpconnect/tcpconnect/internal/buildinfo"
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=feedface",
		"./testdata/printversion")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "tcpconnect v9.8.7 (commit feedface, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
