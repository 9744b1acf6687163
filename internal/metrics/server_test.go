// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// fakeSource counts its reads; after the server stops, it must not be
// read again (the tracer behind it is closed then).
type fakeSource struct {
	mu      sync.Mutex
	stats   event.Stats
	reads   int
	stopped bool
	t       *testing.T
}

func (f *fakeSource) Stats() (event.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		f.t.Error("source read after Stop")
	}
	f.reads++
	return f.stats, nil
}

func (f *fakeSource) Metrics() (event.KernelMetrics, error) {
	f.t.Error("Metrics read without ServerConfig.Kernel")
	return event.KernelMetrics{}, nil
}

// TestServerLifecycle: Serve answers on the address it reports, counts
// what Observe gets, turns /healthz to 503 when its context is done, and
// Stop ends the server and the reads of the source.
func TestServerLifecycle(t *testing.T) {
	src := &fakeSource{stats: event.Stats{LostEvents: 5}, t: t}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Serve(ctx, ServerConfig{Config: Config{Backend: "fentry", Version: "dev"}, Addr: "127.0.0.1:0"}, src)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr().String()
	health := func() int {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := health(); code != 200 {
		t.Errorf("healthz while serving: %d, want 200", code)
	}
	s.Observe(outcome(event.FamilyIPv4, event.ResultRefused, 80, 0))
	got, _ := scrape(t, url, false)
	if got[`tcpconnect_connects_total{family="ipv4",result="refused"}`] != 1 || got["tcpconnect_events_lost_total"] != 5 {
		t.Errorf("scrape: %v", got)
	}
	if src.reads == 0 {
		t.Error("the source's stats were not read at the scrape")
	}
	cancel()
	if code := health(); code != 503 {
		t.Errorf("healthz once the context is done: %d, want 503", code)
	}
	s.Stop()
	src.mu.Lock()
	src.stopped = true
	src.mu.Unlock()
	// Not a GET to the old address: once closed, the port may be anyone's.
	select {
	case <-s.served:
	default:
		t.Error("the server still serves after Stop")
	}
	// A late read (a scrape that was running) gets the last values.
	if st, err := s.src.stats(); err != nil || st.LostEvents != 5 {
		t.Errorf("stats after Stop: %+v %v, want the last values", st, err)
	}
}
