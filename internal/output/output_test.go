// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"golang.org/x/sys/unix"
)

func sampleEvent() *event.Event {
	e := &event.Event{
		Kind:   event.KindAttempt,
		Time:   time.Date(2026, 11, 29, 17, 41, 2, 123456789, time.Local),
		Mono:   5_500_000_000,
		PID:    4123,
		TID:    4124,
		UID:    1000,
		Family: event.FamilyIPv4,
		Saddr:  netip.MustParseAddr("10.0.2.15"),
		Daddr:  netip.MustParseAddr("93.184.216.34"),
		Sport:  48312,
		Dport:  443,
	}
	copy(e.Comm[:], "curl")
	return e
}

func render(t *testing.T, p Printer, events ...*event.Event) string {
	t.Helper()
	var buf bytes.Buffer
	switch p := p.(type) {
	case *Table:
		p.w.Reset(&buf)
	case *JSON:
		p.w.Reset(&buf)
	}
	if err := p.Header(); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := p.Event(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestTableDefault(t *testing.T) {
	v6 := sampleEvent()
	v6.Family = event.FamilyIPv6
	v6.Saddr = netip.MustParseAddr("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")
	v6.Daddr = netip.MustParseAddr("::1")
	copy(v6.Comm[:], "ssh\x00\x00")
	got := render(t, NewTable(nil, Options{}), sampleEvent(), v6)
	want := "" +
		"TIME     PID     COMM             SADDR                                   SPORT  DADDR                                   DPORT\n" +
		"17:41:02 4123    curl             10.0.2.15                               48312  93.184.216.34                           443\n" +
		"17:41:02 4123    ssh              2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff  48312  ::1                                     443\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	// Every row's DPORT starts where the header's does, whatever the
	// address length.
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	col := strings.Index(lines[0], "DPORT")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("DPORT column misaligned in %q", l)
		}
	}
}

func TestTableOptions(t *testing.T) {
	e := sampleEvent()
	e.Kind = event.KindOutcome
	e.Result = event.ResultError
	e.Errno = unix.EMFILE
	e.Latency = 1234567 * time.Nanosecond
	got := render(t, NewTable(nil, Options{Timestamp: true, StartMono: 2_000_000_000, PrintUID: true, Results: true, IPv4Only: true}), e)
	want := "" +
		"TIME(s)   UID    PID     COMM             SADDR           SPORT  DADDR           DPORT  LAT(ms)    RESULT\n" +
		"3.500     1000   4123    curl             10.0.2.15       48312  93.184.216.34   443    1.235      error:EMFILE\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"curl":             "curl",
		"a\x1b[31mred":     `a\x1b[31mred`,
		"tab\there":        `tab\x09here`,
		"back\\slash":      `back\\slash`,
		"nl\nfake 1.2.3.4": `nl\x0afake 1.2.3.4`,
		"caf\xc3\xa9":      "café",
		"bad\xc3":          `bad\xc3`,
		"\x7f\x9b":         `\x7f\x9b`,
	} {
		if got := string(appendEscaped(nil, []byte(in))); got != want {
			t.Errorf("appendEscaped(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSON(t *testing.T) {
	e := sampleEvent()
	copy(e.Comm[:], "ev\x1b]0;x\x07\"q\\")
	e.PPID, e.PIDNsPID, e.CgroupID, e.NetnsIno, e.MntnsIno = 1, 7, 42, 4026531840, 4026531841
	out := render(t, NewJSON(nil, Options{Backend: "sockops", Cgroups: fakeCgroups{}}), e)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", out, err)
	}
	want := map[string]any{
		"time": e.Time.UTC().Format(time.RFC3339Nano), "pid": 4123.0, "tid": 4124.0,
		"comm": `ev\x1b]0;x\x07"q\\`, "uid": 1000.0, "family": "ipv4",
		"saddr": "10.0.2.15", "sport": 48312.0, "daddr": "93.184.216.34", "dport": 443.0,
		"backend": "sockops", "ppid": 1.0, "pid_ns_pid": 7.0, "cgroup_id": 42.0,
		"cgroup_path": `/system.slice/docker-` + containerHex + `.scope\x1b`, "container_id": containerHex,
		"netns_ino": 4026531840.0, "mntns_ino": 4026531841.0,
		// Unknown process and user: null, and the keys are there.
		"user": nil, "exe": nil, "args": nil, "args_truncated": false, "parent_comm": nil, "parent_exe": nil,
	}
	if len(m) != len(want) {
		t.Errorf("keys %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if !strings.HasSuffix(m["time"].(string), "Z") || !strings.Contains(m["time"].(string), ".123456789") {
		t.Errorf("time %q is not RFC 3339 UTC with nanoseconds", m["time"])
	}

	// With -r the outcome keys are always there; errno is null when none.
	e.Kind, e.Result, e.Latency = event.KindOutcome, event.ResultEstablished, 1500*time.Microsecond
	out = render(t, NewJSON(nil, Options{Results: true}), e)
	m = nil
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if m["result"] != "established" || m["errno"] != nil || m["latency_us"] != 1500.0 {
		t.Errorf("outcome keys wrong: %s", out)
	}
	if _, ok := m["errno"]; !ok {
		t.Errorf("errno key missing: %s", out)
	}
	e.Result, e.Errno = event.ResultRefused, unix.ECONNREFUSED
	out = render(t, NewJSON(nil, Options{Results: true}), e)
	if !strings.Contains(out, `"result":"refused","errno":"ECONNREFUSED"`) {
		t.Errorf("refused: %s", out)
	}
}

func TestCounts(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	counts := []event.Count{
		{Family: event.FamilyIPv4, Saddr: a, Daddr: a, Dport: 80, Connects: 2},
		{Family: event.FamilyIPv6, Saddr: netip.IPv6Loopback(), Daddr: netip.IPv6Loopback(), Dport: 22, Connects: 7},
		{Family: event.FamilyIPv4, Saddr: a, Daddr: a, Dport: 81, Connects: 2},
	}
	var buf bytes.Buffer
	if err := WriteCounts(&buf, counts, false, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SADDR") ||
		!strings.HasSuffix(lines[1], "22     7") || !strings.HasSuffix(lines[2], "80     2") ||
		!strings.HasSuffix(lines[3], "81     2") {
		t.Errorf("counts table:\n%s", buf.String())
	}
	buf.Reset()
	if err := WriteCounts(&buf, counts, true, false); err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(buf.String(), "\n", 2)[0]
	if first != `{"family":"ipv6","saddr":"::1","daddr":"::1","dport":22,"connects":7}` {
		t.Errorf("counts JSON: %s", first)
	}
}

// BenchmarkTableEvent and BenchmarkJSONEvent measure the per-event cost
// of formatting; both must report 0 allocs/op.
func BenchmarkTableEvent(b *testing.B) {
	benchPrinter(b, NewTable(discard{}, Options{Results: true}))
}

func BenchmarkJSONEvent(b *testing.B) {
	benchPrinter(b, NewJSON(discard{}, Options{Results: true, Backend: "sockops"}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func benchPrinter(b *testing.B, p Printer) {
	e := sampleEvent()
	e.Kind, e.Result, e.Latency = event.KindOutcome, event.ResultRefused, 42*time.Microsecond
	e.Errno = unix.ECONNREFUSED
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Event(e); err != nil {
			b.Fatal(err)
		}
	}
	_ = p.Flush()
}

func TestFormattingDoesNotAllocate(t *testing.T) {
	e := sampleEvent()
	e.Result, e.Errno = event.ResultRefused, unix.ECONNREFUSED
	e.Proc = hostileProcess()
	for name, p := range map[string]Printer{
		"table": NewTable(discard{}, Options{Results: true, Who: true, Users: fakeUsers{}}),
		"json":  NewJSON(discard{}, Options{Results: true, Users: fakeUsers{}}),
	} {
		p.Event(e) // grow the buffers once
		if n := testing.AllocsPerRun(100, func() { _ = p.Event(e) }); n != 0 {
			t.Errorf("%s: %v allocations per event, want 0", name, n)
		}
	}
}

const containerHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeCgroups names cgroup 42 like a docker container (with a hostile
// byte in its path) and knows no other.
type fakeCgroups struct{}

func (fakeCgroups) Lookup(id uint64) (string, string) {
	if id == 42 {
		return "/system.slice/docker-" + containerHex + ".scope\x1b", containerHex
	}
	return "", ""
}

func TestTableContainerAndExtended(t *testing.T) {
	host := sampleEvent()
	host.PPID, host.CgroupID = 1, 1
	ctr := sampleEvent()
	ctr.PPID, ctr.CgroupID = 77, 42
	for _, results := range []bool{false, true} {
		out := render(t, NewTable(nil, Options{Container: true, Extended: true, Results: results, IPv4Only: true, Cgroups: fakeCgroups{}}), host, ctr)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("table:\n%s", out)
		}
		for _, col := range []string{"PPID", "CONTAINER", "CGROUP"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header %q lacks %s", lines[0], col)
			}
		}
		// Columns line up: CONTAINER and CGROUP start where the header says.
		for _, col := range []string{"CONTAINER", "CGROUP", "SADDR"} {
			at := strings.Index(lines[0], col)
			for _, l := range lines[1:] {
				if l[at] == ' ' || l[at-1] != ' ' {
					t.Errorf("%s misaligned in %q (header %q)", col, l, lines[0])
				}
			}
		}
		if !strings.Contains(lines[1], " - ") || !strings.HasSuffix(lines[1], " -") {
			t.Errorf("host row %q: want - for CONTAINER and CGROUP", lines[1])
		}
		if !strings.Contains(lines[2], " "+containerHex[:12]+" ") || !strings.HasSuffix(lines[2], `.scope\x1b`) ||
			!strings.Contains(lines[2], " 77 ") {
			t.Errorf("container row %q", lines[2])
		}
	}
}

// fakeNames knows one destination.
type fakeNames struct{}

func (fakeNames) Lookup(_ uint64, _ uint32, a netip.Addr) (string, bool) {
	if a == netip.MustParseAddr("93.184.216.34") {
		return "example.test\x1b", true
	}
	return "", false
}

func TestDNAME(t *testing.T) {
	known, unknown := sampleEvent(), sampleEvent()
	unknown.Daddr = netip.MustParseAddr("10.9.9.9")
	for _, o := range []Options{{Names: fakeNames{}}, {Names: fakeNames{}, Results: true, Extended: true, Cgroups: fakeCgroups{}}} {
		out := render(t, NewTable(nil, o), known, unknown)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		at := strings.Index(lines[0], "DNAME")
		if at < 0 || !strings.HasPrefix(lines[1][at:], `example.test\x1b`) || !strings.HasPrefix(lines[2][at:], "-") {
			t.Errorf("DNAME column:\n%s", out)
		}
		if o.Extended {
			cg := strings.Index(lines[0], "CGROUP")
			for _, l := range lines[1:] {
				if l[cg-1] != ' ' || l[cg] == ' ' {
					t.Errorf("CGROUP misaligned in %q", l)
				}
			}
		}
	}
	out := render(t, NewJSON(nil, Options{Names: fakeNames{}}), known, unknown)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.Contains(lines[0], `"daddr_name":"example.test\\x1b"`) || !strings.Contains(lines[1], `"daddr_name":null`) {
		t.Errorf("JSON daddr_name:\n%s", out)
	}
}

// TestLongValuesKeepASeparator: an escaped name or an errno name longer
// than its column still leaves a space before the next column.
func TestLongValuesKeepASeparator(t *testing.T) {
	e := sampleEvent()
	copy(e.Comm[:], "\x1b[31mev\nil\a")
	e.Result, e.Errno = event.ResultError, unix.ENOTRECOVERABLE
	out := render(t, NewTable(nil, Options{Results: true, Extended: true, IPv4Only: true, Cgroups: fakeCgroups{}}), e)
	row := strings.Split(out, "\n")[1]
	f := strings.Fields(row)
	if len(f) != 11 || f[3] != `\x1b[31mev\x0ail\x07` || f[4] != "10.0.2.15" || f[9] != "error:ENOTRECOVERABLE" || f[10] != "-" {
		t.Errorf("row %q splits into %q", row, f)
	}
}

// fakeUsers names UID 1000 with a hostile name.
type fakeUsers struct{}

func (fakeUsers) Lookup(uid uint32) (string, bool) {
	if uid == 1000 {
		return "al\x1b[2Jice", true
	}
	return "", false
}

func hostileProcess() *event.Process {
	return &event.Process{
		Exe:        "/opt/dir with spaces/\xffbin\n\x1b[31m",
		Args:       []string{"argv0 x", "line1\nline2", "", `q"b\`, "AAAA"},
		ArgsCut:    true,
		ArgsLen:    10000,
		ParentComm: "sh\x1b",
		ParentExe:  "/usr/bin/dash",
	}
}

// TestWho: exe, arguments, parent and user, escaped in JSON and in the
// table; each row stays one line and each value one token.
func TestWho(t *testing.T) {
	e := sampleEvent()
	e.Proc = hostileProcess()
	out := render(t, NewJSON(nil, Options{Users: fakeUsers{}}), e)
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("JSON is not one line: %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", out, err)
	}
	wantArgs := []any{"argv0 x", `line1\x0aline2`, "", `q"b\\`, "AAAA"}
	args, _ := m["args"].([]any)
	if m["exe"] != `/opt/dir with spaces/\xffbin\x0a\x1b[31m` || len(args) != len(wantArgs) ||
		m["args_truncated"] != true || m["parent_comm"] != `sh\x1b` || m["parent_exe"] != "/usr/bin/dash" ||
		m["user"] != `al\x1b[2Jice` {
		t.Errorf("JSON %s", out)
	}
	for i := range min(len(args), len(wantArgs)) {
		if args[i] != wantArgs[i] {
			t.Errorf("args[%d] = %q, want %q", i, args[i], wantArgs[i])
		}
	}

	out = render(t, NewTable(nil, Options{Who: true, Users: fakeUsers{}}), e)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("table is not a header and one row: %q", out)
	}
	if !strings.HasSuffix(lines[0], "  EXE ARGS") || !strings.Contains(lines[0], "COMM             USER     PCOMM            SADDR") {
		t.Errorf("header %q", lines[0])
	}
	want := `  /opt/dir\x20with\x20spaces/\xffbin\x0a\x1b[31m argv0\x20x line1\x0aline2 "" q"b\\ AAAA [+9970 bytes]`
	if !strings.HasSuffix(lines[1], want) {
		t.Errorf("row %q\nwant suffix %q", lines[1], want)
	}
	if f := strings.Fields(lines[1]); f[2] != "curl" || f[3] != `al\x1b[2Jice` || f[4] != `sh\x1b` {
		t.Errorf("COMM USER PCOMM in %q", lines[1])
	}

	// An empty argument and one that is two quotes differ.
	e.Proc = &event.Process{Exe: "/bin/x", Args: []string{"x", "", `""`, `"a b"`}, ArgsLen: 12}
	out = render(t, NewTable(nil, Options{Who: true}), e)
	if want := ` /bin/x x "" \x22" \x22a\x20b"` + "\n"; !strings.HasSuffix(out, want) {
		t.Errorf("row %q\nwant suffix %q", out, want)
	}

	// Unknown process, user without a name.
	e.Proc, e.UID = nil, 7
	out = render(t, NewTable(nil, Options{Who: true, Users: fakeUsers{}}), e)
	if row := strings.Split(out, "\n")[1]; !strings.HasSuffix(row, "  -") || strings.Fields(row)[3] != "7" {
		t.Errorf("unknown process row %q", row)
	}
}

// TestProcessCacheByPointer: one printer, two processes in turn: each
// line has its own process (the rendering is cached per process).
func TestProcessCacheByPointer(t *testing.T) {
	a, b := &event.Process{Exe: "/bin/a", Args: []string{"a"}}, &event.Process{Exe: "/bin/b", Args: []string{"b"}}
	e := sampleEvent()
	for name, p := range map[string]Printer{"json": NewJSON(nil, Options{}), "table": NewTable(nil, Options{Who: true})} {
		var evs []*event.Event
		for _, proc := range []*event.Process{a, b, a, nil, b} {
			ev := *e
			ev.Proc = proc
			evs = append(evs, &ev)
		}
		lines := strings.Split(strings.TrimSuffix(render(t, p, evs...), "\n"), "\n")
		if name == "table" {
			lines = lines[1:]
		}
		for i, want := range []string{"/bin/a", "/bin/b", "/bin/a", "", "/bin/b"} {
			has := func(s string) bool { return strings.Contains(lines[i], s) }
			if want == "" && (has("/bin/a") || has("/bin/b")) || want != "" && !has(want) {
				t.Errorf("%s line %d %q, want %q", name, i, lines[i], want)
			}
		}
	}
}

// TestHeaderTitlesAligned: in every combination of columns, each title
// stands apart and starts where its column starts in a row (-x -d once
// printed DPORTDNAME, -r -d RESULTDNAME).
func TestHeaderTitlesAligned(t *testing.T) {
	for mask := range 1 << 6 {
		o := Options{
			Timestamp: mask&1 != 0, PrintUID: mask&2 != 0, Results: mask&4 != 0,
			Extended: mask&8 != 0, Container: mask&16 != 0, Cgroups: fakeCgroups{},
		}
		if mask&32 != 0 {
			o.Names = fakeNames{}
		}
		e := sampleEvent()
		e.Result = event.ResultEstablished
		out := render(t, NewTable(nil, o), e)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		titles, fields := fieldStarts(lines[0]), fieldStarts(lines[1])
		if len(titles) != len(fields) {
			t.Errorf("options %+v: %d titles, %d fields:\n%s", o, len(titles), len(fields), out)
			continue
		}
		for i := range titles {
			if titles[i] != fields[i] {
				t.Errorf("options %+v: title %d at column %d, its field at %d:\n%s", o, i, titles[i], fields[i], out)
			}
		}
	}
}

// fieldStarts returns where each space-separated field of line starts.
func fieldStarts(line string) []int {
	var at []int
	for i := range line {
		if line[i] != ' ' && (i == 0 || line[i-1] == ' ') {
			at = append(at, i)
		}
	}
	return at
}

func TestWhy(t *testing.T) {
	natted, dropped, rejected, plain := sampleEvent(), sampleEvent(), sampleEvent(), sampleEvent()
	for _, e := range []*event.Event{natted, dropped, rejected, plain} {
		e.Kind, e.Result = event.KindOutcome, event.ResultTimeout
	}
	natted.Result = event.ResultEstablished
	natted.Why = event.Why{NatDaddr: netip.MustParseAddr("10.96.3.7"), NatDport: 8080}
	dropped.Why = event.Why{SynRetransmits: 6, DropReason: "NETFILTER_DROP"}
	rejected.Result, rejected.Errno = event.ResultUnreachable, unix.EHOSTUNREACH
	rejected.Why = event.Why{SynRetransmits: 1, ICMP: true, ICMPType: 3, ICMPCode: 1, ICMPFrom: netip.MustParseAddr("192.0.2.1")}

	out := render(t, NewTable(nil, Options{Results: true, Why: true}), natted, dropped, rejected, plain)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, want := range [][]string{
		{"REALDEST", "RETX", "WHY"},
		{"established", "10.96.3.7:8080", "0", "-"},
		{"timeout", "-", "6", "drop:NETFILTER_DROP"},
		{"unreachable", "-", "1", "icmp:3/1@192.0.2.1"},
		{"timeout", "-", "0", "-"},
	} {
		f := strings.Fields(lines[i])
		if got := f[len(f)-len(want):]; !slices.Equal(got, want) {
			t.Errorf("line %d %q ends in %q, want %q", i, lines[i], got, want)
		}
	}
	// The columns line up under their titles.
	at := strings.Index(lines[0], "REALDEST")
	if !strings.HasPrefix(lines[1][at:], "10.96.3.7:8080 ") {
		t.Errorf("REALDEST misaligned:\n%s", out)
	}
	// The default table of -r is unchanged by the new fields.
	if strings.Contains(render(t, NewTable(nil, Options{Results: true}), dropped), "NETFILTER") {
		t.Error("-r without -w shows the drop reason")
	}

	// JSON: the keys come with -w only.
	if out := render(t, NewJSON(nil, Options{Results: true}), natted); strings.Contains(out, "nat_daddr") {
		t.Errorf("-r --json without -w has the why keys: %s", out)
	}
	out = render(t, NewJSON(nil, Options{Results: true, Why: true}), natted, dropped, rejected)
	var got []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, m)
	}
	for i, want := range []map[string]any{
		{"nat_daddr": "10.96.3.7", "nat_dport": 8080.0, "syn_retransmits": 0.0, "drop_reason": nil, "icmp_type": nil, "icmp_code": nil, "icmp_from": nil},
		{"nat_daddr": nil, "nat_dport": nil, "syn_retransmits": 6.0, "drop_reason": "NETFILTER_DROP", "icmp_type": nil, "icmp_code": nil, "icmp_from": nil},
		{"nat_daddr": nil, "nat_dport": nil, "syn_retransmits": 1.0, "drop_reason": nil, "icmp_type": 3.0, "icmp_code": 1.0, "icmp_from": "192.0.2.1"},
	} {
		for k, v := range want {
			if g, ok := got[i][k]; !ok || g != v {
				t.Errorf("record %d: %s = %v (present %v), want %v", i, k, g, ok, v)
			}
		}
	}
}
