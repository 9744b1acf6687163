// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// TestRecordLayout checks what stays hand-written about the records:
// the reader looks at a record's first byte for its kind before it knows
// the record's type, so kind must come first in each; and the generated
// Go types are as large as the object's BTF says.
func TestRecordLayout(t *testing.T) {
	if off := unsafe.Offsetof(tcpconnectEvent{}.Kind); off != 0 {
		t.Errorf("struct event: kind at offset %d, want 0", off)
	}
	if off := unsafe.Offsetof(tcpconnectDnsRecord{}.Kind); off != 0 {
		t.Errorf("struct dns_record: kind at offset %d, want 0", off)
	}
	if off := unsafe.Offsetof(tcpconnectProcRecord{}.Kind); off != 0 {
		t.Errorf("struct proc_record: kind at offset %d, want 0", off)
	}
	spec, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]uintptr{
		"event":       unsafe.Sizeof(tcpconnectEvent{}),
		"dns_record":  unsafe.Sizeof(tcpconnectDnsRecord{}),
		"proc_record": unsafe.Sizeof(tcpconnectProcRecord{}),
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Fatal(err)
		}
		if uintptr(st.Size) != size {
			t.Errorf("BTF struct %s is %d bytes, the Go type %d", name, st.Size, size)
		}
	}
}

// TestSpec checks that the embedded object has every program, map and
// variable that the Go side names.
func TestSpec(t *testing.T) {
	spec, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, objs := range []any{&fentryObjects{}, &kprobeObjects{}, &sockopsObjects{}, &whyObjects{}} {
		typ := reflect.TypeOf(objs).Elem()
		for i := range typ.NumField() {
			checkTags(t, spec.Programs, spec.Maps, spec.Variables, typ.Field(i))
		}
	}
	if err := configure(spec, Config{BufferSize: DefaultBufferSize, MaxPending: 10}); err != nil {
		t.Errorf("configure: %v", err)
	}
	if got := spec.Maps["events"].MaxEntries; got != DefaultBufferSize {
		t.Errorf("ring buffer size %d, want %d", got, DefaultBufferSize)
	}
}

func checkTags[P, M any](t *testing.T, progs map[string]P, maps map[string]M, vars map[string]*ebpf.VariableSpec, f reflect.StructField) {
	t.Helper()
	if f.Anonymous {
		for i := range f.Type.NumField() {
			checkTags(t, progs, maps, vars, f.Type.Field(i))
		}
		return
	}
	name := f.Tag.Get("ebpf")
	_, isProg := progs[name]
	_, isMap := maps[name]
	_, isVar := vars[name]
	if !isProg && !isMap && !isVar {
		t.Errorf("object has no program, map or variable %q (field %s)", name, f.Name)
	}
}

func TestConfigureRejectsBadBufferSize(t *testing.T) {
	spec, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{3000, 12288, -4096} {
		if err := configure(spec, Config{BufferSize: size, MaxPending: 1}); err == nil {
			t.Errorf("buffer size %d accepted", size)
		}
	}
}

// eventBytes returns r as the bytes of a ring-buffer record.
func eventBytes(r *tcpconnectEvent) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
}

func TestDecode(t *testing.T) {
	r := &tcpconnectEvent{
		Kind:      uint8(recordOutcome),
		Outcome:   uint8(tcpconnectOutcomeOUTCOME_FAILED),
		StartNs:   2_000_000_000,
		LatencyNs: 1_500_000,
		Saddr:     [16]byte{10, 0, 0, 1},
		Daddr:     [16]byte{10, 0, 0, 2},
		Pid:       42,
		Tid:       43,
		Uid:       1000,
		Err:       int32(unix.ECONNREFUSED),
		Sport:     40000,
		Dport:     80,
		Family:    afInet,
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Comm[0])), len(r.Comm)), "curl")
	raw := eventBytes(r)

	c := clock{wall: time.Unix(1000, 0), mono: 1_000_000_000}
	var e event.Event
	if err := decode(raw, c, &e); err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(time.Unix(1001, 0)) || e.PID != 42 || e.TID != 43 || e.UID != 1000 ||
		e.Saddr != netip.MustParseAddr("10.0.0.1") || e.Daddr != netip.MustParseAddr("10.0.0.2") ||
		e.Sport != 40000 || e.Dport != 80 || e.Family != event.FamilyIPv4 ||
		e.Result != event.ResultRefused || e.Errno != unix.ECONNREFUSED ||
		e.Latency != 1500*time.Microsecond || string(e.CommBytes()) != "curl" ||
		e.Kind != event.KindOutcome {
		t.Errorf("decoded %+v", e)
	}

	r.Family = afInet6
	r.Daddr = netip.MustParseAddr("::ffff:127.0.0.1").As16()
	if err := decode(raw, c, &e); err != nil {
		t.Fatal(err)
	}
	if e.Family != event.FamilyIPv6 || e.Daddr.String() != "::ffff:127.0.0.1" {
		t.Errorf("v4-mapped destination decoded as %v %v", e.Family, e.Daddr)
	}
	if n := testing.AllocsPerRun(100, func() { _ = decode(raw, c, &e) }); n > 0 {
		t.Errorf("decode allocates %v times", n)
	}
	if err := decode(raw[:10], c, &e); err == nil {
		t.Error("short record accepted")
	}
	r.Family = 1
	if err := decode(raw, c, &e); err == nil {
		t.Error("unknown family accepted")
	}
	r.Family = afInet
	r.Kind = uint8(recordDNS)
	if err := decode(raw, c, &e); err == nil {
		t.Error("a DNS record decoded as an event")
	}
}

// TestDNSRecord: a DNS record's message is bounded by its buffer, whatever
// its length field says.
func TestDNSRecord(t *testing.T) {
	r := &tcpconnectDnsRecord{Kind: uint8(recordDNS), Tcp: 1, Query: 1, Len: 3, Family: afInet, Port: 53, SockCookie: 7, NetnsIno: 9, NetnsCookie: 1 << 40, Uid: 11}
	copy(r.Addr[:], []byte{127, 0, 0, 53})
	copy(r.Msg[:], "abc")
	raw := unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
	var m event.DNSMessage
	if !decodeDNS(raw, &m) || string(m.Msg) != "abc" || !m.TCP || !m.Query || m.Socket != 7 || m.Netns != 1<<40 || m.UID != 11 ||
		m.Server != netip.MustParseAddrPort("127.0.0.53:53") {
		t.Errorf("got %+v", m)
	}
	r.Len = 1 << 20
	if !decodeDNS(raw, &m) || len(m.Msg) != len(r.Msg) {
		t.Errorf("oversized length: %d bytes", len(m.Msg))
	}
	if decodeDNS(raw[:100], &m) {
		t.Error("short DNS record accepted")
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := eventBytes(&tcpconnectEvent{Kind: uint8(recordAttempt), Family: afInet6})
	var e event.Event
	c := newClock()
	b.ReportAllocs()
	for b.Loop() {
		if err := decode(raw, c, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// sourceFiles are the inputs of go generate, in the order of
// bpf/sources.sha256.
var sourceFiles = []string{"bpf/tcpconnect.bpf.c", "bpf/tcpconnect.h", "bpf/headers/vmlinux.h", "bpf/headers/vmlinux_x86.h", "bpf/headers/vmlinux_arm64.h"}

// generatedFiles are bpf2go's outputs, one object and one Go file per
// target of gen.go.
var generatedFiles = []string{
	"tcpconnect_x86_bpfel.o", "tcpconnect_x86_bpfel.go",
	"tcpconnect_arm64_bpfel.o", "tcpconnect_arm64_bpfel.go",
}

// TestGeneratedUpToDate fails when the BPF sources changed without `go
// generate`: first by the recorded hashes (no clang needed), then, where
// clang is installed (CI), by compiling again and comparing with the
// committed files. Byte for byte only with the compiler that built them
// (bpf/clang.version): another clang emits other instructions from the
// same sources, so with it the test compares what the Go side relies on
// instead: the generated Go file (every type, enum, program, map and
// variable name bpf2go took from the object) and each program's type and
// section, each map's geometry, each variable's size and initial value.
// A logic-only change whose object was not committed is then caught by
// the hashes alone, as without clang.
func TestGeneratedUpToDate(t *testing.T) {
	recorded, err := os.ReadFile("bpf/sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, f := range sourceFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want.WriteString(hex.EncodeToString(sum[:]) + "  " + f + "\n")
	}
	if string(recorded) != want.String() {
		t.Fatalf("BPF sources changed since the objects were generated: run `go generate ./internal/tracer`\nrecorded:\n%s\nnow:\n%s", recorded, want.String())
	}

	if _, err := exec.LookPath("clang"); err != nil {
		if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal("clang is not installed, so the committed objects cannot be checked against a fresh build")
		}
		t.Skip("clang is not installed: checked the source hashes only")
	}
	builtWith, err := os.ReadFile("bpf/clang.version")
	if err != nil {
		t.Fatal(err)
	}
	version, err := exec.Command("clang", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	sameCompiler := strings.SplitN(string(version), "\n", 2)[0] == strings.TrimSpace(string(builtWith))

	// Run gen.go's own bpf2go line, writing into a temporary folder.
	dir := t.TempDir()
	args := bpf2goArgs(t)
	args = append([]string{"tool", "bpf2go", "-output-dir", dir, "-go-package", "tracer"}, args...)
	gen := exec.Command("go", args...)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	files := []string{}
	for _, f := range generatedFiles {
		if strings.HasSuffix(f, ".o") && !sameCompiler {
			compareObjects(t, filepath.Join(dir, f), f)
			continue
		}
		files = append(files, f)
	}
	if !sameCompiler {
		t.Logf("clang differs from the one that built the objects (%s): comparing programs, maps and variables, not instructions",
			strings.TrimSpace(string(builtWith)))
	}
	for _, f := range files {
		fresh, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build: run `go generate ./internal/tracer` and commit", f)
		}
	}
}

// compareObjects compares what the loader uses of two objects: each
// program's type, attach point and section, each map's geometry, each
// variable's size and initial value.
func compareObjects(t *testing.T, freshPath, committedPath string) {
	t.Helper()
	fresh, err := ebpf.LoadCollectionSpec(freshPath)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := ebpf.LoadCollectionSpec(committedPath)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(s *ebpf.CollectionSpec) map[string]string {
		d := map[string]string{}
		for name, p := range s.Programs {
			d["program "+name] = fmt.Sprintf("%v %v %s %s %s", p.Type, p.AttachType, p.AttachTo, p.SectionName, p.License)
		}
		for name, m := range s.Maps {
			d["map "+name] = fmt.Sprintf("%v key %d value %d entries %d flags %#x", m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags)
		}
		for name, v := range s.Variables {
			d["variable "+name] = fmt.Sprintf("%s size %d value %x", v.SectionName, v.Size(), v.Value)
		}
		return d
	}
	want, got := describe(committed), describe(fresh)
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: in the committed object, not in a fresh build: run `go generate ./internal/tracer` and commit", k)
		} else if g != w {
			t.Errorf("%s: committed %s, fresh build %s: run `go generate ./internal/tracer` and commit", k, w, g)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: in a fresh build, not in the committed object: run `go generate ./internal/tracer` and commit", k)
		}
	}
}

// bpf2goArgs returns the arguments of gen.go's bpf2go line.
func bpf2goArgs(t *testing.T) []string {
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		var args []string
		// The only quoted argument is -cflags "...".
		for i, part := range strings.Split(rest, `"`) {
			if i%2 == 1 {
				args = append(args, part)
			} else {
				args = append(args, strings.Fields(part)...)
			}
		}
		return args
	}
	t.Fatal("gen.go has no bpf2go line")
	return nil
}

// TestObjectsAgree checks, on any host, that the committed object of
// every architecture has the same programs, maps, variables and record
// layouts as this architecture's, so that a build for the other one is
// the same tool (the arm64 guest of tools/kernels runs it for real).
func TestObjectsAgree(t *testing.T) {
	host, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"tcpconnect_x86_bpfel.o", "tcpconnect_arm64_bpfel.o"} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		for name, p := range host.Programs {
			q, ok := spec.Programs[name]
			if !ok {
				t.Errorf("%s lacks program %s", obj, name)
				continue
			}
			if q.Type != p.Type || q.AttachType != p.AttachType || q.SectionName != p.SectionName {
				t.Errorf("%s: program %s is %v/%v in %s, here %v/%v in %s", obj, name, q.Type, q.AttachType, q.SectionName, p.Type, p.AttachType, p.SectionName)
			}
		}
		if len(spec.Programs) != len(host.Programs) {
			t.Errorf("%s has %d programs, this architecture's %d", obj, len(spec.Programs), len(host.Programs))
		}
		for name, m := range host.Maps {
			n, ok := spec.Maps[name]
			if !ok {
				t.Errorf("%s lacks map %s", obj, name)
			} else if n.Type != m.Type || n.KeySize != m.KeySize || n.ValueSize != m.ValueSize || n.MaxEntries != m.MaxEntries {
				t.Errorf("%s: map %s differs: %+v, here %+v", obj, name, n, m)
			}
		}
		for name := range host.Variables {
			if _, ok := spec.Variables[name]; !ok {
				t.Errorf("%s lacks variable %s", obj, name)
			}
		}
		for _, typ := range []string{"event", "dns_record", "count_key", "outcome_key"} {
			var a, b *btf.Struct
			if err := host.Types.TypeByName(typ, &a); err != nil {
				t.Fatal(err)
			}
			if err := spec.Types.TypeByName(typ, &b); err != nil {
				t.Errorf("%s: %v", obj, err)
				continue
			}
			if a.Size != b.Size || len(a.Members) != len(b.Members) {
				t.Errorf("%s: struct %s is %d bytes with %d members, here %d with %d", obj, typ, b.Size, len(b.Members), a.Size, len(a.Members))
				continue
			}
			for i := range a.Members {
				if a.Members[i].Name != b.Members[i].Name || a.Members[i].Offset != b.Members[i].Offset {
					t.Errorf("%s: struct %s member %d is %s at %v, here %s at %v", obj, typ, i, b.Members[i].Name, b.Members[i].Offset, a.Members[i].Name, a.Members[i].Offset)
				}
			}
		}
	}
}
