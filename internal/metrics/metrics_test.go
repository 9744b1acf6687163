// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

func outcome(f event.Family, r event.Result, dport uint16, lat time.Duration) *event.Event {
	return &event.Event{Kind: event.KindOutcome, Family: f, Result: r, Dport: dport, Latency: lat}
}

// scrape GETs /metrics and returns its samples keyed by the series as
// printed (name{labels}), so tests compare exact values of exact series.
func scrape(t *testing.T, url string, openMetrics bool) (map[string]float64, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if openMetrics {
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	return parseText(t, resp.Body), resp.Header
}

// parseText reads the text exposition (Prometheus or OpenMetrics):
// "series value [timestamp]" per sample line.
func parseText(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Label values here hold no spaces, so the series ends at the
		// first space after its closing brace (or its name).
		end := strings.LastIndexByte(line, '}') + 1
		if end == 0 {
			end = strings.IndexByte(line, ' ')
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			t.Fatalf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		out[line[:end]] = v
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCountsAndHistogram(t *testing.T) {
	stats := event.Stats{LostEvents: 7, LostAttempts: 3}
	m, err := New(Config{
		Backend: "fentry", Version: "v9.9.9", Commit: "0123abc", GoVersion: "go1.26.8",
		ConstLabels: prometheus.Labels{"node": "n1"},
		Ports:       []uint16{443, 80},
		Stats:       func() (event.Stats, error) { return stats, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		m.Observe(outcome(event.FamilyIPv4, event.ResultEstablished, 443, 300*time.Microsecond))
	}
	m.Observe(outcome(event.FamilyIPv4, event.ResultEstablished, 443, 2*time.Second))
	m.Observe(outcome(event.FamilyIPv6, event.ResultEstablished, 8080, 20*time.Second))
	m.Observe(outcome(event.FamilyIPv4, event.ResultRefused, 80, time.Millisecond))
	m.Observe(outcome(event.FamilyIPv4, event.ResultRefused, 80, time.Millisecond))
	m.Observe(outcome(event.FamilyIPv6, event.ResultNoPort, 22, 0))
	m.Observe(outcome(event.FamilyIPv4, event.ResultTimeout, 9, 127*time.Second))
	// Not outcomes: never counted.
	m.Observe(&event.Event{Kind: event.KindAttempt, Family: event.FamilyIPv4, Dport: 443})
	m.Observe(&event.Event{Kind: event.KindPending, Family: event.FamilyIPv4, Result: event.ResultPending, Dport: 443})
	m.Observe(&event.Event{Kind: event.KindOutcome, Family: event.FamilyAny, Result: event.ResultEstablished, Dport: 443})

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for _, om := range []bool{false, true} {
		got, hdr := scrape(t, srv.URL, om)
		ct := hdr.Get("Content-Type")
		if om != strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Errorf("OpenMetrics asked: %v, Content-Type %q", om, ct)
		}
		want := map[string]float64{
			`tcpconnect_connects_total{family="ipv4",node="n1",result="established"}`: 4,
			`tcpconnect_connects_total{family="ipv6",node="n1",result="established"}`: 1,
			`tcpconnect_connects_total{family="ipv4",node="n1",result="refused"}`:     2,
			`tcpconnect_connects_total{family="ipv6",node="n1",result="no-port"}`:     1,
			`tcpconnect_connects_total{family="ipv4",node="n1",result="timeout"}`:     1,
			// Created up front: a result that never happened is a 0,
			// not a missing series, so rate() and alerts work from the
			// first scrape.
			`tcpconnect_connects_total{family="ipv6",node="n1",result="refused"}`:                                0,
			`tcpconnect_connects_by_port_total{dport="443",node="n1"}`:                                           4,
			`tcpconnect_connects_by_port_total{dport="80",node="n1"}`:                                            2,
			`tcpconnect_handshake_latency_seconds_count{node="n1"}`:                                              5,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="0.0001"}`:                                 0,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="0.0005"}`:                                 3,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="1.0"}`:                                    3,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="2.5"}`:                                    4,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="10.0"}`:                                   4,
			`tcpconnect_handshake_latency_seconds_bucket{node="n1",le="+Inf"}`:                                   5,
			`tcpconnect_events_lost_total{node="n1"}`:                                                            7,
			`tcpconnect_attempts_untracked_total{node="n1"}`:                                                     3,
			`tcpconnect_info{backend="fentry",commit="0123abc",goversion="go1.26.8",node="n1",version="v9.9.9"}`: 1,
		}
		if !om {
			// The classic text format writes bounds the Go way.
			for k, v := range want {
				if nk := strings.NewReplacer(`le="1.0"`, `le="1"`, `le="10.0"`, `le="10"`).Replace(k); nk != k {
					delete(want, k)
					want[nk] = v
				}
			}
		}
		for k, v := range want {
			if g, ok := got[k]; !ok {
				t.Errorf("openmetrics=%v: no series %s", om, k)
			} else if g != v {
				t.Errorf("openmetrics=%v: %s = %v, want %v", om, k, g, v)
			}
		}
		if sum := got[`tcpconnect_handshake_latency_seconds_sum{node="n1"}`]; sum < 22.0008 || sum > 22.0010 {
			t.Errorf("latency sum %v, want 22.0009", sum)
		}
		var ports, families int
		for k := range got {
			if strings.HasPrefix(k, "tcpconnect_connects_by_port_total{") {
				ports++
			}
			if strings.HasPrefix(k, "tcpconnect_connects_total{") {
				families++
			}
			// The standard collectors are there, with the node label too.
			if strings.HasPrefix(k, "go_goroutines") && k != `go_goroutines{node="n1"}` {
				t.Errorf("Go collector series %s", k)
			}
		}
		// Only the listed ports, never one per port seen; 2 families × 9
		// results.
		if ports != 2 || families != 18 {
			t.Errorf("%d by-port series (want 2), %d connects series (want 18)", ports, families)
		}
		if _, ok := got[`process_open_fds{node="n1"}`]; !ok {
			t.Error("no process collector")
		}
		if _, ok := got[`go_goroutines{node="n1"}`]; !ok {
			t.Error("no Go collector")
		}
	}
}

func TestNoPortsNoNode(t *testing.T) {
	m, err := New(Config{Backend: "kprobe", Version: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(outcome(event.FamilyIPv4, event.ResultEstablished, 443, time.Millisecond))
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	got, _ := scrape(t, srv.URL, true)
	for k := range got {
		if strings.Contains(k, "node=") || strings.HasPrefix(k, "tcpconnect_connects_by_port_total") ||
			strings.HasPrefix(k, "tcpconnect_events_lost_total") {
			t.Errorf("unexpected series %s", k)
		}
	}
	if got[`tcpconnect_connects_total{family="ipv4",result="established"}`] != 1 {
		t.Errorf("established: %v", got)
	}
}

// TestStatsError: a failed read of the kernel counters leaves the other
// series served.
func TestStatsError(t *testing.T) {
	m, err := New(Config{Backend: "sockops", Version: "dev",
		Stats: func() (event.Stats, error) { return event.Stats{}, errors.New("map gone") }})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(outcome(event.FamilyIPv6, event.ResultReset, 1, 0))
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	got, _ := scrape(t, srv.URL, false)
	if got[`tcpconnect_connects_total{family="ipv6",result="reset"}`] != 1 {
		t.Errorf("reset not served after a stats error: %v", got)
	}
	if _, ok := got["tcpconnect_events_lost_total"]; ok {
		t.Error("lost events served although they could not be read")
	}
}

func TestHealthz(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(); code != 503 {
		t.Errorf("before setReady(true): %d, want 503", code)
	}
	m.setReady(true)
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("ready: %d %q, want 200 ok", code, body)
	}
	m.setReady(false)
	if code, _ := get(); code != 503 {
		t.Errorf("after setReady(false): %d, want 503", code)
	}
	resp, err := http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
}

// TestObserveAllocatesNothing: Observe runs for every record the kernel
// sends.
func TestObserveAllocatesNothing(t *testing.T) {
	m, err := New(Config{Ports: []uint16{443}, ConstLabels: prometheus.Labels{"node": "n"}})
	if err != nil {
		t.Fatal(err)
	}
	events := []*event.Event{
		outcome(event.FamilyIPv4, event.ResultEstablished, 443, time.Millisecond),
		outcome(event.FamilyIPv6, event.ResultEstablished, 8443, 3*time.Second),
		outcome(event.FamilyIPv4, event.ResultRefused, 80, 0),
		outcome(event.FamilyIPv6, event.ResultError, 443, 0),
		{Kind: event.KindPending, Family: event.FamilyIPv4, Result: event.ResultPending},
	}
	for _, e := range events {
		if n := testing.AllocsPerRun(1000, func() { m.Observe(e) }); n != 0 {
			t.Errorf("Observe(%v %v) allocates %v times", e.Family, e.Result, n)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	m, err := New(Config{Ports: []uint16{443}})
	if err != nil {
		b.Fatal(err)
	}
	e := outcome(event.FamilyIPv4, event.ResultEstablished, 443, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(e)
	}
}

// TestKernelCounts: with Config.Kernel, the connect and latency series
// come from the kernel's counts (cumulated into Prometheus's buckets).
func TestKernelCounts(t *testing.T) {
	km := event.KernelMetrics{
		Outcomes: []event.OutcomeCount{
			{Family: event.FamilyIPv4, Result: event.ResultEstablished, Dport: 443, Count: 5},
			{Family: event.FamilyIPv4, Result: event.ResultEstablished, Count: 2},
			{Family: event.FamilyIPv6, Result: event.ResultRefused, Dport: 443, Count: 3},
			{Family: event.FamilyIPv4, Result: event.ResultError, Count: 1},
		},
		// 16 bucket counts and +Inf: 4 within 100µs, 2 within 1ms, 1 beyond 10s.
		Buckets: []uint64{4, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		Sum:     20 * time.Second,
	}
	m, err := New(Config{Backend: "sockops", Ports: []uint16{443, 80},
		Kernel: func() (event.KernelMetrics, error) { return km, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	got, _ := scrape(t, srv.URL, false)
	for series, want := range map[string]float64{
		`tcpconnect_connects_total{family="ipv4",result="established"}`: 7,
		`tcpconnect_connects_total{family="ipv6",result="refused"}`:     3,
		`tcpconnect_connects_total{family="ipv4",result="error"}`:       1,
		`tcpconnect_connects_total{family="ipv6",result="timeout"}`:     0,
		`tcpconnect_connects_by_port_total{dport="443"}`:                8,
		`tcpconnect_connects_by_port_total{dport="80"}`:                 0,
		`tcpconnect_handshake_latency_seconds_bucket{le="0.0001"}`:      4,
		`tcpconnect_handshake_latency_seconds_bucket{le="0.001"}`:       6,
		`tcpconnect_handshake_latency_seconds_bucket{le="10"}`:          6,
		`tcpconnect_handshake_latency_seconds_bucket{le="+Inf"}`:        7,
		`tcpconnect_handshake_latency_seconds_count`:                    7,
		`tcpconnect_handshake_latency_seconds_sum`:                      20,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// TestSynDrops: attempts whose SYN this host dropped are counted by the
// kernel's reason, from events and from the kernel's counts alike.
func TestSynDrops(t *testing.T) {
	want := map[string]float64{
		`tcpconnect_syn_drops_total{reason="NETFILTER_DROP"}`:           3,
		`tcpconnect_syn_drops_total{reason="QDISC_DROP"}`:               1,
		`tcpconnect_connects_total{family="ipv4",result="timeout"}`:     4,
		`tcpconnect_connects_total{family="ipv4",result="established"}`: 1,
	}
	check := func(m *Metrics) {
		t.Helper()
		srv := httptest.NewServer(m.Handler())
		defer srv.Close()
		got, _ := scrape(t, srv.URL, false)
		for series, v := range want {
			if g, ok := got[series]; !ok || g != v {
				t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
			}
		}
		for series := range got {
			if strings.HasPrefix(series, "tcpconnect_syn_drops_total") && want[series] == 0 {
				t.Errorf("unexpected series %s", series)
			}
		}
	}

	m, err := New(Config{Backend: "sockops"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"NETFILTER_DROP", "NETFILTER_DROP", "QDISC_DROP", "NETFILTER_DROP", ""} {
		e := outcome(event.FamilyIPv4, event.ResultTimeout, 80, time.Second)
		if r == "" {
			e.Result = event.ResultEstablished
		}
		e.Why.DropReason = r
		m.Observe(e)
	}
	check(m)

	km := event.KernelMetrics{Outcomes: []event.OutcomeCount{
		{Family: event.FamilyIPv4, Result: event.ResultTimeout, DropReason: "NETFILTER_DROP", Count: 2},
		{Family: event.FamilyIPv4, Result: event.ResultTimeout, Dport: 80, DropReason: "NETFILTER_DROP", Count: 1},
		{Family: event.FamilyIPv4, Result: event.ResultTimeout, DropReason: "QDISC_DROP", Count: 1},
		{Family: event.FamilyIPv4, Result: event.ResultEstablished, Count: 1},
	}}
	m, err = New(Config{Backend: "sockops", Kernel: func() (event.KernelMetrics, error) { return km, nil }})
	if err != nil {
		t.Fatal(err)
	}
	check(m)
}
