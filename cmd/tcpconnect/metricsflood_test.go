// SPDX-License-Identifier: Apache-2.0

package main

import (
	"github.com/tcpconnect/tcpconnect/internal/metrics"

	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"golang.org/x/crypto/bcrypt"
)

// procStatus returns a field of /proc/PID/status in kB, and the number of
// open fds of pid.
func procUsage(t *testing.T, pid int) (rssKB, fds int) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rssKB, len(ents)
}

// TestMetricsFlood: thousands of idle and slow connections to the
// metrics endpoint leave the tool small (RSS, fds), its tracing exact,
// and /healthz answering within a second once they go.
func TestMetricsFlood(t *testing.T) {
	testutil.RequirePrivileged(t)
	const idle, slow, connects = 3000, 100, 300
	ap := listener(t, "127.0.0.1:0")
	p := startTool(t, "--json", "-P", strconv.Itoa(int(ap.Port())), "--metrics-addr", "127.0.0.1:0")
	base := p.metricsURL(t)
	addr := strings.TrimPrefix(base, "http://")
	pid := p.cmd.Process.Pid
	_, fds0 := procUsage(t, pid)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var refused int
	for i := range idle + slow {
		// Connections beyond the tool's bound are accepted and closed;
		// with the accept queue full a dial may also time out (slow
		// machines): the flood goes on.
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			refused++
			if i < idle {
				continue
			}
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i >= idle {
			// Slow loris: a request line, then headers that never end.
			fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
		}
	}
	stopDrip := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopDrip:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, c := range conns[len(conns)-slow:] {
				c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				c.Write([]byte("X"))
			}
		}
	}()

	// Tracing goes on, exactly, under the flood.
	sports := map[string]bool{}
	for range connects {
		sport, errno := testutil.ConnectRaw(ap)
		if errno != 0 {
			t.Fatal(errno)
		}
		sports[fmt.Sprintf(`"sport":%d,`, sport)] = true
	}
	for range connects {
		l := p.waitLine(t, fmt.Sprintf(`"dport":%d,`, ap.Port()))
		for k := range sports {
			if strings.Contains(l, k) {
				delete(sports, k)
			}
		}
	}
	if len(sports) != 0 {
		t.Errorf("%d connects not printed under the flood", len(sports))
	}
	time.Sleep(time.Second) // let the server take what it takes
	rss, fds := procUsage(t, pid)
	t.Logf("under %d idle and %d slow connections (%d dials timed out): RSS %d KiB, %d fds (%d before)", idle, slow, refused, rss, fds, fds0)
	if rss > 64<<10 {
		t.Errorf("RSS %d KiB under the flood, want < 64 MiB", rss)
	}
	if fds > fds0+metrics.MaxConns+4 {
		t.Errorf("%d fds under the flood (%d before): not bounded by %d connections", fds, fds0, metrics.MaxConns)
	}

	close(stopDrip)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("/healthz after the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz after the flood: %s", resp.Status)
	}
	t.Logf("/healthz answered %v after the flood stopped", time.Since(start))
	p.stop(t, syscall.SIGINT)
	if !strings.Contains(p.stderr.String(), fmt.Sprintf("tcpconnect: %d events printed, 0 lost", connects)) {
		t.Errorf("exit line: %s", p.stderr.String())
	}
}

// TestMetricsBasicAuth: with an exporter-toolkit web config, a scrape
// without or with wrong credentials is refused (401), the right ones
// are served; a broken config fails the start.
func TestMetricsBasicAuth(t *testing.T) {
	testutil.RequirePrivileged(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startTool(t, "-q", "--metrics-addr", "127.0.0.1:0", "--web.config.file", cfg)
	base := p.metricsURL(t)
	for _, tc := range []struct {
		user, pass string
		want       int
	}{
		{"", "", 401}, {"prom", "wrong", 401}, {"other", "s3cret", 401}, {"prom", "s3cret", 200},
	} {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("scrape as %q/%q: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
	p.stop(t, syscall.SIGINT)

	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("basic_auth_users: [\n"), 0o600)
	var out, errb strings.Builder
	if code := realMain([]string{"-q", "--metrics-addr", "127.0.0.1:0", "--web.config.file", bad}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "--web.config.file") {
		t.Errorf("broken web config: exit %d, stderr %q", code, errb.String())
	}
}

// TestMetricsFloodLeavesTheScraper: a flood of connections from the node
// itself (any local user) takes at most metrics.MaxConnsPerSource slots:
// a scraper from elsewhere gets /healthz and /metrics during the flood.
// The tool runs in a namespace of the test, whose peer namespace is the
// scraper's "elsewhere".
func TestMetricsFloodLeavesTheScraper(t *testing.T) {
	testutil.RequirePrivileged(t)
	node, peer := testutil.NewNetNS(t), testutil.NewNetNS(t)
	nodeAddr := netip.MustParsePrefix("10.233.0.1/24")
	testutil.Veth(t, node, peer, []netip.Prefix{nodeAddr}, []netip.Prefix{netip.MustParsePrefix("10.233.0.2/24")})
	p := startToolWith(t, func(c *exec.Cmd) error { return node.Do(c.Start) },
		"--output", "none", "--metrics-addr", netip.AddrPortFrom(nodeAddr.Addr(), 0).String())
	base := p.metricsURL(t)
	addr := strings.TrimPrefix(base, "http://")
	if ino, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.cmd.Process.Pid)); err != nil || ino != fmt.Sprintf("net:[%d]", node.Inode()) {
		t.Fatalf("the tool runs in network namespace %s (%v), want the node's, %d", ino, err, node.Inode())
	}

	// The flood, from the node: to its own address and over loopback.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := node.Do(func() error {
		for i := range 4 * metrics.MaxConns {
			d := net.Dialer{Timeout: 500 * time.Millisecond}
			if i%2 == 1 {
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%200))}
				// 127/8 reaches the node's address over lo, from any
				// loopback source.
			}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				continue // closed by the bound, or the queue is full
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("flood: %d connections open", len(conns))
	time.Sleep(200 * time.Millisecond) // the server has accepted or closed each

	// The scraper, from the peer namespace: every dial made there (the
	// transport dials on goroutines of its own).
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = peer.Do(func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("%s during a flood of %d connections from the node: %v", path, len(conns), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || path == "/metrics" && !strings.Contains(string(body), "tcpconnect_events_lost_total") {
			t.Errorf("%s during the flood: %s, %d bytes", path, resp.Status, len(body))
		}
	}
	p.stop(t, syscall.SIGINT)
}
