// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

// TestEventLayout pins decode's offsets to the layout that bpf2go took
// from the object's BTF, and that layout to the size BTF gives.
func TestEventLayout(t *testing.T) {
	var e tcpconnectEvent
	for name, want := range map[string]uintptr{
		"StartNs": offStartNs, "LatencyNs": offLatencyNs, "Saddr": offSaddr, "Daddr": offDaddr,
		"CgroupId": offCgroupID, "Ppid": offPpid, "PidNsPid": offPidNsPid, "NetnsIno": offNetnsIno, "MntnsIno": offMntnsIno,
		"Pid": offPid, "Tid": offTid, "Uid": offUID, "Err": offErr, "Sport": offSport,
		"Dport": offDport, "Family": offFamily, "Kind": offKind, "Outcome": offOutcome, "Comm": offComm,
		"ExecId": offExecID,
	} {
		f, ok := reflect.TypeOf(e).FieldByName(name)
		if !ok {
			t.Errorf("generated event has no field %s", name)
			continue
		}
		if f.Offset != want {
			t.Errorf("field %s at offset %d, decode reads %d", name, f.Offset, want)
		}
	}
	if unsafe.Sizeof(tcpconnectDnsRecord{}) != dnsRecordSize || dnsRecordSize == eventSize {
		t.Errorf("dns_record is %d bytes, decode expects %d (and it must differ from an event's %d)",
			unsafe.Sizeof(tcpconnectDnsRecord{}), dnsRecordSize, eventSize)
	}
	if f, _ := reflect.TypeOf(tcpconnectDnsRecord{}).FieldByName("Msg"); f.Offset != offDNSMsg {
		t.Errorf("dns_record msg at %d, decode reads %d", f.Offset, offDNSMsg)
	}
	if unsafe.Sizeof(e) != eventSize {
		t.Errorf("generated event is %d bytes, decode expects %d", unsafe.Sizeof(e), eventSize)
	}
	spec, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("event", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != eventSize {
		t.Errorf("BTF struct event is %d bytes, want %d", st.Size, eventSize)
	}
}

// TestSpec checks that the embedded object has every program, map and
// variable that the Go side names.
func TestSpec(t *testing.T) {
	spec, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, objs := range []any{&fentryObjects{}, &kprobeObjects{}, &sockopsObjects{}} {
		typ := reflect.TypeOf(objs).Elem()
		for i := range typ.NumField() {
			checkTags(t, spec.Programs, spec.Maps, typ.Field(i))
		}
	}
	if err := configure(spec, Config{BufferSize: DefaultBufferSize, MaxPending: 10, UID: -1}); err != nil {
		t.Errorf("configure: %v", err)
	}
	if got := spec.Maps["events"].MaxEntries; got != DefaultBufferSize {
		t.Errorf("ring buffer size %d, want %d", got, DefaultBufferSize)
	}
}

func checkTags[P, M any](t *testing.T, progs map[string]P, maps map[string]M, f reflect.StructField) {
	t.Helper()
	if f.Anonymous {
		for i := range f.Type.NumField() {
			checkTags(t, progs, maps, f.Type.Field(i))
		}
		return
	}
	name := f.Tag.Get("ebpf")
	_, isProg := progs[name]
	_, isMap := maps[name]
	if !isProg && !isMap {
		t.Errorf("object has no program or map %q (field %s)", name, f.Name)
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

func TestDecode(t *testing.T) {
	raw := make([]byte, eventSize)
	le := binary.LittleEndian
	le.PutUint64(raw[offStartNs:], 2_000_000_000)
	le.PutUint64(raw[offLatencyNs:], 1_500_000)
	copy(raw[offSaddr:], []byte{10, 0, 0, 1})
	copy(raw[offDaddr:], []byte{10, 0, 0, 2})
	le.PutUint32(raw[offPid:], 42)
	le.PutUint32(raw[offTid:], 43)
	le.PutUint32(raw[offUID:], 1000)
	le.PutUint32(raw[offErr:], uint32(unix.ECONNREFUSED))
	le.PutUint16(raw[offSport:], 40000)
	le.PutUint16(raw[offDport:], 80)
	le.PutUint16(raw[offFamily:], afInet)
	raw[offKind] = byte(event.KindOutcome)
	raw[offOutcome] = event.OutcomeFailed
	copy(raw[offComm:], "curl")

	c := clock{wall: time.Unix(1000, 0), mono: 1_000_000_000}
	var e event.Event
	if err := decode(raw, c, &e); err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(time.Unix(1001, 0)) || e.PID != 42 || e.TID != 43 || e.UID != 1000 ||
		e.Saddr != netip.MustParseAddr("10.0.0.1") || e.Daddr != netip.MustParseAddr("10.0.0.2") ||
		e.Sport != 40000 || e.Dport != 80 || e.Family != event.FamilyIPv4 ||
		e.Result != event.ResultRefused || e.Errno != unix.ECONNREFUSED ||
		e.Latency != 1500*time.Microsecond || string(e.CommBytes()) != "curl" {
		t.Errorf("decoded %+v", e)
	}

	le.PutUint16(raw[offFamily:], afInet6)
	copy(raw[offDaddr:], netip.MustParseAddr("::ffff:127.0.0.1").AsSlice())
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
	le.PutUint16(raw[offFamily:], 1)
	if err := decode(raw, c, &e); err == nil {
		t.Error("unknown family accepted")
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := make([]byte, eventSize)
	binary.LittleEndian.PutUint16(raw[offFamily:], afInet6)
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
var sourceFiles = []string{"bpf/tcpconnect.bpf.c", "bpf/tcpconnect.h", "bpf/headers/vmlinux.h"}

// TestGeneratedUpToDate fails when the BPF sources changed without `go
// generate`: first by the recorded hashes (no clang needed), then, where
// clang is installed (CI), by compiling again and comparing the object.
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
	// Run gen.go's own bpf2go line, writing into a temporary folder.
	dir := t.TempDir()
	args := bpf2goArgs(t)
	args = append([]string{"tool", "bpf2go", "-output-dir", dir, "-go-package", "tracer"}, args...)
	gen := exec.Command("go", args...)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, f := range []string{"tcpconnect_x86_bpfel.o", "tcpconnect_x86_bpfel.go"} {
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
