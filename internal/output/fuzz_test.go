// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/cgroups"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// hostile names every cgroup and every address with what the fuzzer
// gives, as a hostile container runtime or DNS server would.
type hostile struct{ path string }

func (h hostile) Lookup(uint64) (string, string) { return h.path, cgroups.ContainerID(h.path) }

type hostileNames struct{ name string }

func (h hostileNames) Lookup(uint64, uint32, netip.Addr) (string, bool) { return h.name, true }

func fuzzEvent(comm []byte) *event.Event {
	e := sampleEvent()
	e.Comm = [16]byte{}
	copy(e.Comm[:15], comm) // the kernel's comm is NUL-terminated
	e.Result = event.ResultEstablished
	return e
}

// FuzzTableRow: whatever a process, a cgroup or a DNS answer is named, a
// row stays one line of printable text.
func FuzzTableRow(f *testing.F) {
	f.Add([]byte("curl"), "/system.slice/docker-"+containerHex+".scope", "example.test")
	f.Add([]byte("\x1b[31mev\nil\a"), "/a\nb\x00c\\", "a\x17b\r\n.test")
	f.Add([]byte("\xff\xfe"), "\u202e/evil", "\xc0\x80")
	f.Fuzz(func(t *testing.T, comm []byte, path, name string) {
		o := Options{Results: true, Extended: true, Container: true, PrintUID: true,
			Cgroups: hostile{path: path}, Names: hostileNames{name}}
		out := render(t, NewTable(nil, o), fuzzEvent(comm))
		lines := bytes.Split(bytes.TrimSuffix([]byte(out), []byte("\n")), []byte("\n"))
		if len(lines) != 2 {
			t.Fatalf("header and one event gave %d lines: %q", len(lines), out)
		}
		for _, c := range lines[1] {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("control byte %#x in row %q", c, lines[1])
			}
		}
	})
}

// FuzzJSONLine: the same in JSON: one line, valid JSON, and each
// untrusted string escaped once, in the table's style.
func FuzzJSONLine(f *testing.F) {
	f.Add([]byte("curl"), "/system.slice/docker-"+containerHex+".scope", "example.test")
	f.Add([]byte("q\"uo\\te"), "/a\"b\\c", "\"},{\"x\":1")
	f.Add([]byte("\xff\xfe\x00"), "\u2028line\u2029sep", "\x7f")
	f.Fuzz(func(t *testing.T, comm []byte, path, name string) {
		e := fuzzEvent(comm)
		o := Options{Cgroups: hostile{path: path}, Names: hostileNames{name}}
		out := render(t, NewJSON(nil, o), e)
		if bytes.Count([]byte(out), []byte("\n")) != 1 || !json.Valid([]byte(out)) {
			t.Fatalf("not one line of valid JSON: %q", out)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		for key, raw := range map[string][]byte{"comm": e.CommBytes(), "cgroup_path": []byte(path), "daddr_name": []byte(name)} {
			want := string(appendEscaped(nil, raw))
			if key == "cgroup_path" && path == "" {
				want = ""
			}
			if m[key] != want {
				t.Errorf("%s = %q, want %q", key, m[key], want)
			}
		}
	})
}
