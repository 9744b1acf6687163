// SPDX-License-Identifier: Apache-2.0

package main

import (
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5}, 5},
		{[]float64{1, math.NaN(), 3}, 2},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Error("median sorted its argument in place")
	}
}

func TestPercentile(t *testing.T) {
	s := make([]int64, 100)
	for i := range s {
		s[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want int64
	}{{99, 99}, {50, 50}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("p%v of 1..100 = %d, want %d", tc.p, got, tc.want)
		}
	}
	// Nearest rank: with 10 samples p99 is the largest.
	if got := percentile([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 1000}, 99); got != 1000 {
		t.Errorf("p99 of 10 samples = %d, want 1000", got)
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %d", got)
	}
}

func TestParseTable(t *testing.T) {
	out := `TIME     PID     COMM             SADDR                                   SPORT  DADDR                                   DPORT
20:51:45 7667    curl             127.0.0.1                               57296  127.0.0.1                               1
20:51:45 7668    my prog          ::1                                     32862  ::1                                     40000
20:51:45 7668    bench            ::ffff:127.0.0.1                        32862  ::ffff:127.0.0.1                        40000
20:51:45 7669    pyth
garbage
`
	p, err := parseTable(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.lines != 5 || p.garbled != 2 {
		t.Errorf("lines %d garbled %d, want 5 and 2", p.lines, p.garbled)
	}
	if p.events[portKey{57296, 1}] != 1 || p.events[portKey{32862, 40000}] != 2 {
		t.Errorf("events %v", p.events)
	}
	if p.firstGarbled != "20:51:45 7669    pyth" {
		t.Errorf("first garbled %q", p.firstGarbled)
	}
}

func TestParseBpftrace(t *testing.T) {
	out := "Attaching 2 probes...\nTIME     PID     COMM             SADDR  SPORT  DADDR  DPORT\n21:01:26 21634   curl             127.0.0.1  50834  127.0.0.1  1\nLost 12 events\nLost 3 events\n\n"
	p, err := parseBpftrace(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.lines != 1 || p.garbled != 0 || p.events[portKey{50834, 1}] != 1 || p.lost != 15 {
		t.Errorf("lines %d garbled %d lost %d events %v", p.lines, p.garbled, p.lost, p.events)
	}
	if p, _ := parseTable(strings.NewReader(out)); p.garbled != 4 {
		t.Errorf("tcpconnect's table parser let bpftrace's framing through: %d garbled", p.garbled)
	}
}

func TestParseJSON(t *testing.T) {
	out := `{"time":"2026-01-02T03:04:05.123456789Z","pid":1,"tid":1,"comm":"a\\x1b","uid":0,"family":"ipv4","saddr":"127.0.0.1","sport":5,"daddr":"127.0.0.1","dport":6,"backend":"sockops"}
{"time":"2026-01-02T03:04:05Z","pid":1,"tid":1,"comm":"a","uid":0,"family":"ipv6","saddr":"::1","sport":5,"daddr":"::1","dport":6,"backend":"sockops","result":"refused","errno":"ECONNREFUSED","latency_us":3}
{"time":"2026-01-02T03:04:05Z","pid":1,"comm":"a","uid":0,"family":"ipv6","saddr":"::1","sport":5,"daddr":"::1","backend":"sockops"}
{"time":"2026-01-02T03:04:05Z","pid":1,"tid":1,"comm":"a","uid":0,"fam
`
	p, err := parseJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.lines != 4 || p.garbled != 2 || p.events[portKey{5, 6}] != 2 {
		t.Errorf("lines %d garbled %d events %v", p.lines, p.garbled, p.events)
	}
}

func TestParseCounts(t *testing.T) {
	out := `SADDR                                   DADDR                                   DPORT  CONNECTS
127.0.0.1                               127.0.0.1                               40000  12
::1                                     ::1                                     40001  7
::1                                     ::1                                     40000  1
bad line
`
	p, err := parseCounts(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.counts[40000] != 13 || p.counts[40001] != 7 || p.garbled != 1 {
		t.Errorf("counts %v garbled %d", p.counts, p.garbled)
	}
}

func TestMatchEvents(t *testing.T) {
	attempts := map[portKey]int{{100, 1}: 2, {101, 1}: 1, {102, 2}: 1}
	events := map[portKey]int{{100, 1}: 1, {101, 1}: 2, {102, 2}: 1, {555, 9}: 4}
	got := matchEvents(attempts, events, map[uint16]bool{1: true, 2: true})
	want := match{Attempts: 4, Matched: 3, Missing: 1, Extra: 1, Foreign: 4}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestMatchCounts(t *testing.T) {
	attempts := map[portKey]int{{100, 1}: 2, {101, 1}: 1, {102, 2}: 3}
	counts := map[uint16]uint64{1: 3, 2: 2, 9: 5}
	got := matchCounts(attempts, counts, map[uint16]bool{1: true, 2: true})
	want := match{Attempts: 6, Matched: 5, Missing: 1, Foreign: 5}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseSummary(t *testing.T) {
	lines := []string{"Tracing tcp connections. Hit Ctrl-C to end.", "tcpconnect: warning: 3 events lost (ring buffer full; try a larger --buffer-size)", "tcpconnect: 120 events printed, 3 lost"}
	printed, lost, ok := parseSummary(lines)
	if !ok || printed != 120 || lost != 3 {
		t.Errorf("got %d %d %v", printed, lost, ok)
	}
	if _, _, ok := parseSummary(lines[:2]); ok {
		t.Error("summary found in lines without one")
	}
}

func TestParseSYN(t *testing.T) {
	// IPv4 header (20 bytes) + TCP header with SYN from 40000 to 80.
	v4 := make([]byte, 40)
	v4[0], v4[9] = 0x45, 6
	v4[20], v4[21], v4[22], v4[23] = 0x9c, 0x40, 0, 80
	v4[33] = 0x02
	if s, d, ok := parseSYN(v4); !ok || s != 40000 || d != 80 {
		t.Errorf("v4 SYN: %d %d %v", s, d, ok)
	}
	v4[33] = 0x12 // SYN-ACK
	if _, _, ok := parseSYN(v4); ok {
		t.Error("SYN-ACK accepted")
	}
	v6 := make([]byte, 60)
	v6[0], v6[6] = 0x60, 6
	v6[40], v6[41], v6[42], v6[43] = 0x9c, 0x41, 0x1f, 0x90
	v6[53] = 0x02
	if s, d, ok := parseSYN(v6); !ok || s != 40001 || d != 8080 {
		t.Errorf("v6 SYN: %d %d %v", s, d, ok)
	}
	if _, _, ok := parseSYN(v6[:50]); ok {
		t.Error("truncated segment accepted")
	}
}

func TestEvaluate(t *testing.T) {
	row := func(cfg string, ratio float64) Row {
		return Row{Mode: modeEstablished, Conc: 1, Config: cfg, Ratio: num(ratio), P99Ratio: 1.1,
			CPUPer100k: 0.1, MaxRSSMiB: 20, AttachMs: 100, AttachMaxMs: 120, IWIPerSec: 150,
			Match: match{Attempts: 10, Matched: 10}}
	}
	res := &Results{Rows: []Row{row("table", 0.95), row("json", 0.90), row("count", 0.96)},
		Idle: []IdleResult{{Config: "table", MedianMs: 0.5, MaxMs: 1}}}
	got := map[string]bool{}
	for _, c := range evaluate(res) {
		got[c.Name] = c.Met
	}
	want := map[string]bool{"throughput": false, "table/json vs -c": false, "p99 latency": true,
		"CPU (table)": true, "CPU (json)": true, "idle latency": true, "wakeups": true,
		"loss": true, "garbled lines": true, "attach time": true, "peak RSS": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("target %s met = %v, want %v", k, got[k], v)
		}
	}
}
