// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/testutil"
)

func TestDaemonFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		output  string
		json    bool
		results bool
		ports   []uint16
	}{
		{args: nil, output: "table"},
		{args: []string{"-q"}, output: "none"},
		{args: []string{"--output", "none", "-r"}, output: "none", results: true},
		{args: []string{"--output=json"}, output: "json", json: true},
		{args: []string{"--json"}, output: "json", json: true},
		{args: []string{"--json", "--output", "json"}, output: "json", json: true},
		{args: []string{"-q", "--output", "none"}, output: "none"},
		// The metrics need results: --metrics-addr implies -r.
		{args: []string{"--metrics-addr", ":9464"}, output: "table", results: true},
		{args: []string{"--json", "--metrics-addr", "127.0.0.1:0", "--metrics-ports", "443, 80,443"},
			output: "json", json: true, results: true, ports: []uint16{443, 80}},
		{args: []string{"--output", "none", "--metrics-addr", "[::1]:9464", "--failed"}, output: "none", results: true},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if o.daemon.output != tc.output || o.json != tc.json || o.results != tc.results ||
			o.tracer.Outcomes != tc.results || !slices.Equal(o.daemon.ports, tc.ports) {
			t.Errorf("%q: output %q json %v results %v outcomes %v ports %v", tc.args,
				o.daemon.output, o.json, o.results, o.tracer.Outcomes, o.daemon.ports)
		}
	}
	for _, args := range [][]string{
		{"--output", "xml"},
		{"--output", "table", "-q"},
		{"--json", "--output", "table"},
		{"--json", "-q"},
		{"-c", "-q"},
		{"--metrics-ports", "80"},
		{"--metrics-addr", ":9464", "--metrics-ports", "0"},
		{"--metrics-addr", ":9464", "--metrics-ports", "80,,443"},
		{"--metrics-addr", ":9464", "-c"},
		{"--metrics-addr", "9464"},
		{"--metrics-addr", "localhost:http"},
		{"--metrics-addr", ":99999"},
	} {
		_, err := parseFlags(args, io.Discard)
		var u errUsage
		if err == nil || !errors.As(err, &u) || u.usage == "" {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}

// TestDaemonSetArgs: the binary's own flag parser takes the arguments of
// the DaemonSet's container, and they mean what the manifest's comments
// say. The rest of the manifest is checked with the Kubernetes API types
// in deploy/kubernetes, a module of its own.
func TestDaemonSetArgs(t *testing.T) {
	args := manifestArgs(t, filepath.Join("..", "..", "deploy", "kubernetes", "daemonset.yaml"))
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("args %q: %v", args, err)
	}
	if o.daemon.output != outputNone || o.daemon.metricsAddr != ":9464" || !o.tracer.Outcomes {
		t.Errorf("args %q: output %q, metrics on %q, outcomes %v", args, o.daemon.output, o.daemon.metricsAddr, o.tracer.Outcomes)
	}
}

// manifestArgs returns the items of the one "args:" block list of a
// manifest. It reads only that shape (plain scalars, one per line), and
// fails the test on any other, rather than parse YAML in general.
func manifestArgs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var args []string
	found := false
	for i, l := range lines {
		if strings.TrimSpace(l) != "args:" {
			continue
		}
		if found {
			t.Fatalf("%s: two args: lists", path)
		}
		found = true
		indent := len(l) - len(strings.TrimLeft(l, " "))
		for _, item := range lines[i+1:] {
			v, ok := strings.CutPrefix(strings.TrimLeft(item, " "), "- ")
			if !ok || len(item)-len(strings.TrimLeft(item, " ")) <= indent {
				break
			}
			if strings.ContainsAny(v, "\"'#[]{}") {
				t.Fatalf("%s: args item %q is not a plain scalar", path, v)
			}
			args = append(args, v)
		}
	}
	if len(args) == 0 {
		t.Fatalf("%s: no args: block list", path)
	}
	return args
}

var metricsAddrRE = regexp.MustCompile(`serving metrics on http://(\S+)/metrics`)

// metricsURL returns the base URL the tool says it serves on.
func (p *proc) metricsURL(t *testing.T) string {
	t.Helper()
	m := metricsAddrRE.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address on stderr: %s", p.stderr.String())
	}
	return "http://" + m[1]
}

// scrapeMetrics returns the samples of /metrics keyed by the series as
// printed (name{labels}).
func scrapeMetrics(base string) (map[string]float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, s.Err()
}

// refusingPort returns a loopback address where nothing listens, so that
// connects to it are refused, for as long as the test runs: a socket
// bound to the port (and never listening) keeps anyone else from taking
// it.
func refusingPort(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
}

// freePort returns a loopback address that was free a moment ago, for a
// program that binds it itself (Prometheus). Another program could take
// it in between: then Prometheus cannot start, and the test says so
// with Prometheus's own log, not with a wrong count.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

var summaryRE = regexp.MustCompile(`tcpconnect: (\d+) events printed, (\d+) lost`)

// TestMetricsEndToEnd: with --output none --metrics-addr, N established
// and M refused attempts are counted exactly while /metrics is scraped
// under the load; lost events match the exit summary; nothing is printed
// per event; SIGTERM ends the run and the server.
func TestMetricsEndToEnd(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n, m = 2000, 500
	open := listener(t, "127.0.0.1:0")
	refused := refusingPort(t)
	ports := fmt.Sprintf("%d,%d", open.Port(), refused.Port())
	// -P keeps other traffic of this host (other tests) out of the counts.
	p := startTool(t, "--output", "none", "--metrics-addr", "127.0.0.1:0", "--metrics-ports", ports, "-P", ports)
	base := p.metricsURL(t)

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz while tracing: %d %q", resp.StatusCode, body)
	}

	// Scrape all the time the load runs: the endpoint must keep answering
	// and the counters must never go down.
	stopScraping := make(chan struct{})
	scrapeErr := make(chan error, 1)
	var scrapes atomic.Int64
	go func() {
		last := 0.0
		for {
			select {
			case <-stopScraping:
				scrapeErr <- nil
				return
			default:
			}
			got, err := scrapeMetrics(base)
			if err != nil {
				scrapeErr <- err
				return
			}
			v := got[`tcpconnect_connects_total{family="ipv4",result="established"}`]
			if v < last {
				scrapeErr <- fmt.Errorf("established went from %v down to %v", last, v)
				return
			}
			last = v
			scrapes.Add(1)
		}
	}()
	// The load comes in rounds, with a scrape completed between each, so
	// that scrapes and connects interleave however fast either is.
	const rounds = 5
	for range rounds {
		var load sync.WaitGroup
		for w := range 4 {
			load.Go(func() {
				for i := w; i < n/rounds; i += 4 {
					if _, errno := testutil.ConnectRaw(open); errno != 0 {
						t.Errorf("connect %v: %v", open, errno)
						return
					}
				}
			})
		}
		for range m / rounds {
			if _, errno := testutil.ConnectRaw(refused); errno != syscall.ECONNREFUSED {
				t.Fatalf("connect %v: %v, want ECONNREFUSED", refused, errno)
			}
		}
		load.Wait()
		for seen := scrapes.Load(); scrapes.Load() <= seen; {
			select {
			case err := <-scrapeErr:
				t.Fatalf("scraping under load: %v", err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	close(stopScraping)
	if err := <-scrapeErr; err != nil {
		t.Fatalf("scraping under load: %v", err)
	}
	t.Logf("%d scrapes during the load", scrapes.Load())

	want := map[string]float64{
		`tcpconnect_connects_total{family="ipv4",result="established"}`:              n,
		`tcpconnect_connects_total{family="ipv4",result="refused"}`:                  m,
		`tcpconnect_connects_total{family="ipv6",result="established"}`:              0,
		`tcpconnect_connects_total{family="ipv4",result="timeout"}`:                  0,
		fmt.Sprintf(`tcpconnect_connects_by_port_total{dport="%d"}`, open.Port()):    n,
		fmt.Sprintf(`tcpconnect_connects_by_port_total{dport="%d"}`, refused.Port()): m,
		`tcpconnect_handshake_latency_seconds_count`:                                 n,
		`tcpconnect_handshake_latency_seconds_bucket{le="+Inf"}`:                     n,
	}
	var got map[string]float64
	// Poll until the counts are reached and stay put: the last outcomes
	// may still be in the ring buffer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = scrapeMetrics(base)
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for k, v := range want {
			done = done && got[k] == v
		}
		if done {
			time.Sleep(200 * time.Millisecond)
			if again, err := scrapeMetrics(base); err == nil && again[`tcpconnect_connects_total{family="ipv4",result="established"}`] == n &&
				again[`tcpconnect_connects_total{family="ipv4",result="refused"}`] == m {
				got = again
				break
			}
		}
		if time.Now().After(deadline) {
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Loopback handshakes finish well within a second.
	if b := got[`tcpconnect_handshake_latency_seconds_bucket{le="1"}`]; b != n {
		t.Errorf("%v of %d handshakes within 1s", b, n)
	}
	// tcpconnect_info says what --version says.
	out, err := exec.Command(binary(t), "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	ver, commit, gover, ok := parseVersionLine(string(out))
	if !ok {
		t.Fatalf("--version printed %q", out)
	}
	infoSuffix := fmt.Sprintf(`",commit=%q,goversion=%q,version=%q}`, commit, gover, ver)
	var info bool
	for k, v := range got {
		if strings.HasPrefix(k, "tcpconnect_info{backend=") && strings.HasSuffix(k, infoSuffix) && v == 1 {
			info = true
		}
	}
	if !info {
		t.Errorf("no tcpconnect_info{backend=...%s 1 in the scrape", infoSuffix)
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no Go collector")
	}
	if _, ok := got["process_resident_memory_bytes"]; !ok {
		t.Error("no process collector")
	}
	lost, ok := got["tcpconnect_events_lost_total"]
	if !ok {
		t.Fatal("no tcpconnect_events_lost_total")
	}

	p.stop(t, syscall.SIGTERM)
	sum := summaryRE.FindStringSubmatch(p.stderr.String())
	if sum == nil {
		t.Fatalf("no summary at exit: %s", p.stderr.String())
	}
	if sum[2] != strconv.FormatFloat(lost, 'f', -1, 64) {
		t.Errorf("tcpconnect_events_lost_total %v, but the tool says %s lost", lost, sum[2])
	}
	// With --output none the kernel counts: no record crosses to user
	// space, and the counts above were exact all the same.
	if sum[1] != "0" {
		t.Errorf("%s records reached user space with --output none, want 0 (counted in the kernel)", sum[1])
	}
	for l := range p.lines {
		t.Errorf("--output none printed %q", l)
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("the metrics server still answers after exit")
	}
}

// TestMetricsWithTable: --metrics-addr alone keeps the table, which then
// shows results (it implies -r), and counts what it prints.
func TestMetricsWithTable(t *testing.T) {
	testutil.RequirePrivileged(t)
	open := listener(t, "127.0.0.1:0")
	p := startTool(t, "--metrics-addr", "127.0.0.1:0", "-P", strconv.Itoa(int(open.Port())))
	base := p.metricsURL(t)
	p.waitLine(t, "LAT(ms)", "RESULT")
	sport, errno := testutil.ConnectRaw(open)
	if errno != 0 {
		t.Fatal(errno)
	}
	line := p.waitLine(t, " "+strconv.Itoa(int(sport))+" ")
	if f := strings.Fields(line); f[len(f)-1] != "established" {
		t.Errorf("line %q", line)
	}
	got, err := scrapeMetrics(base)
	if err != nil {
		t.Fatal(err)
	}
	if v := got[`tcpconnect_connects_total{family="ipv4",result="established"}`]; v != 1 {
		t.Errorf("established %v, want 1", v)
	}
	p.stop(t, syscall.SIGTERM)
}

// TestPrometheusScrapesTool: a real Prometheus scrapes the tool and sees
// exactly the connects made.
func TestPrometheusScrapesTool(t *testing.T) {
	testutil.RequirePrivileged(t)
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("PROMETHEUS MISSING: no prometheus binary (%v), and TCPCONNECT_REQUIRE_PRIVILEGED=1 requires this test to run (.ci/run installs Debian's prometheus)", err)
		}
		t.Skipf("SKIPPING: no prometheus binary (%v); install Debian's prometheus package to run this test", err)
	}
	const n = 25
	open := listener(t, "127.0.0.1:0")
	port := strconv.Itoa(int(open.Port()))
	p := startTool(t, "--output", "none", "--metrics-addr", "127.0.0.1:0", "--metrics-ports", port, "-P", port)
	target := strings.TrimPrefix(p.metricsURL(t), "http://")

	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tcpconnect
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freePort(t).String()
	cmd := exec.Command(prom,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
	)
	promLog := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = promLog, promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Stops this Prometheus, and only it.
	stopProm := func() {
		if cmd.ProcessState != nil {
			return
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stopProm)

	query := func(q string) (string, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return "", err
		}
		if r.Status != "success" {
			return "", fmt.Errorf("query %s: status %s", q, r.Status)
		}
		if len(r.Data.Result) != 1 {
			return "", fmt.Errorf("query %s: %d results", q, len(r.Data.Result))
		}
		v, _ := r.Data.Result[0].Value[1].(string)
		return v, nil
	}
	waitFor := func(q, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var got string
		var err error
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				t.Fatalf("prometheus exited: %v\n%s", err, promLog.String())
			default:
			}
			if got, err = query(q); err == nil && got == want {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s = %q (%v), want %s; prometheus log:\n%s", q, got, err, want, promLog.String())
	}
	waitFor(`up{job="tcpconnect"}`, "1")
	for range n {
		if _, errno := testutil.ConnectRaw(open); errno != 0 {
			t.Fatal(errno)
		}
	}
	want := strconv.Itoa(n)
	waitFor(`sum(tcpconnect_connects_total{result="established"})`, want)
	waitFor(fmt.Sprintf(`tcpconnect_connects_by_port_total{dport=%q}`, port), want)
	waitFor(`tcpconnect_handshake_latency_seconds_count`, want)
	stopProm()
	p.stop(t, syscall.SIGTERM)
}
