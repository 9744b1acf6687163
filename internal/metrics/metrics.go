// SPDX-License-Identifier: Apache-2.0

// Package metrics turns connect outcomes into Prometheus metrics and
// serves them, with a health check, for tcpconnect's daemon mode
// (--metrics-addr): Serve starts the HTTP server for a tracer, reads the
// tracer's counters at each scrape, and Stop ends both before the tracer
// closes.
//
// Every series is created up front and its handle kept in an array or a
// map indexed by what an event carries, so that Observe, called for each
// event on the tracer's hot path, neither allocates nor builds label
// strings. Label values are bounded by construction: family × result is
// a fixed set and ports are counted only when listed (never one series
// per address or per port seen), so the number of series cannot grow with
// the traffic.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// The series that count connects, whether Observe counts them or the
// kernel does (kernelCollector): one name and help text each.
const (
	connectsName = "tcpconnect_connects_total"
	connectsHelp = "TCP connect attempts that ended, by socket family and result (see docs/results.md). Attempts still waiting for an answer are not counted until they end."
	byPortName   = "tcpconnect_connects_by_port_total"
	byPortHelp   = "TCP connect attempts that ended, whatever the result, by destination port; only for the ports given with --metrics-ports."
	latencyName  = "tcpconnect_handshake_latency_seconds"
	latencyHelp  = "Time from the SYN to the established connection, for attempts that were established."
	syndropsName = "tcpconnect_syn_drops_total"
	syndropsHelp = "TCP connect attempts that ended after this host dropped their SYN, by the kernel's drop reason (enum skb_drop_reason without SKB_DROP_REASON_, e.g. NETFILTER_DROP) of the last drop. Also counted in tcpconnect_connects_total."
)

// Config says what to export.
type Config struct {
	// Backend, Version, Commit and GoVersion label tcpconnect_info.
	Backend, Version, Commit, GoVersion string
	// ConstLabels are added to every series this package exports,
	// including the Go and process collectors' (the daemon uses it for
	// "node", so that series from a fleet stay apart even when scraped
	// through one endpoint or federated).
	ConstLabels prometheus.Labels
	// Ports get their own tcpconnect_connects_by_port_total series.
	Ports []uint16
	// Stats reads the kernel's counters; it is called at each scrape, so
	// the exported values are the kernel's own, never a copy that lags.
	// nil: the loss counters are not exported.
	Stats func() (event.Stats, error)
	// Kernel, if set, reads the counts of ended attempts and the latency
	// histogram that the kernel keeps (tracer.Config.KernelMetrics, with
	// the bounds of LatencyBuckets) at each scrape; the connect and
	// latency series then come from it, and Observe is not needed.
	Kernel func() (event.KernelMetrics, error)
}

// LatencyBuckets are the upper bounds, in seconds, of
// tcpconnect_handshake_latency_seconds: from 100µs (a loopback or
// same-rack handshake) to 10s (the first SYN retransmits are at 1s and 3s,
// so anything slower lands in the top buckets or +Inf).
var LatencyBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// families are the label values of family, indexed by familyIndex.
var families = [...]event.Family{event.FamilyIPv4, event.FamilyIPv6}

func familyIndex(f event.Family) int {
	switch f {
	case event.FamilyIPv4:
		return 0
	case event.FamilyIPv6:
		return 1
	}
	return -1
}

// numResults bounds the Result values that are counted: every final
// result. ResultUnknown (an attempt whose answer is not known yet) and
// ResultPending (still unanswered at exit) are not outcomes and never
// count; an attempt counts once, when it ends.
const numResults = int(event.ResultPending)

// Metrics holds the series and serves them.
type Metrics struct {
	reg *prometheus.Registry
	// connects[family][result]; index 0 of result (ResultUnknown) is nil.
	connects [len(families)][numResults]prometheus.Counter
	byPort   map[uint16]prometheus.Counter
	// drops[reason] is made on the first attempt with that reason: the
	// running kernel's enum skb_drop_reason bounds the set.
	drops    map[string]prometheus.Counter
	dropsVec *prometheus.CounterVec
	latency  prometheus.Histogram
	ready    atomic.Bool
	// shutdown, when set, is closed as soon as shutdown begins; healthz
	// reads it itself rather than waiting for a goroutine to clear ready,
	// so that the first probe after shutdown begins already gets 503.
	shutdown <-chan struct{}
	handler  http.Handler
}

// New registers every series on a registry of its own: the global one
// would mix in whatever else the process's libraries register there, and
// tests could not make two.
func New(cfg Config) (*Metrics, error) {
	m := &Metrics{reg: prometheus.NewRegistry()}
	r := prometheus.WrapRegistererWith(cfg.ConstLabels, m.reg)

	connects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: connectsName,
		Help: connectsHelp,
	}, []string{"family", "result"})
	for fi, f := range families {
		for r := event.ResultEstablished; int(r) < numResults; r++ {
			m.connects[fi][r] = connects.WithLabelValues(f.String(), r.String())
		}
	}
	byPort := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: byPortName,
		Help: byPortHelp,
	}, []string{"dport"})
	if len(cfg.Ports) > 0 {
		m.byPort = make(map[uint16]prometheus.Counter, len(cfg.Ports))
		for _, p := range cfg.Ports {
			m.byPort[p] = byPort.WithLabelValues(strconv.Itoa(int(p)))
		}
	}
	m.dropsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: syndropsName,
		Help: syndropsHelp,
	}, []string{"reason"})
	m.drops = make(map[string]prometheus.Counter)
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    latencyName,
		Help:    latencyHelp,
		Buckets: LatencyBuckets,
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tcpconnect_info",
		Help:        "Always 1; its labels say which kernel hook (backend) is attached and which tcpconnect runs (version, commit, and the Go that built it).",
		ConstLabels: prometheus.Labels{"backend": cfg.Backend, "version": cfg.Version, "commit": cfg.Commit, "goversion": cfg.GoVersion},
	})
	info.Set(1)

	cs := []prometheus.Collector{
		info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if cfg.Kernel != nil {
		cs = append(cs, newKernelCollector(cfg.Kernel, cfg.Ports))
	} else {
		cs = append(cs, connects, byPort, m.dropsVec, m.latency)
	}
	if cfg.Stats != nil {
		cs = append(cs, newStatsCollector(cfg.Stats))
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A failed read of the kernel counters must not hide the
		// connect counters: serve what could be gathered.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      r,
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	m.handler = mux
	return m, nil
}

// Observe counts one event. It must not allocate: it runs for every
// record the kernel sends. Records that are not outcomes (attempts of a
// tracer without Outcomes, pending attempts at exit) are ignored.
func (m *Metrics) Observe(e *event.Event) {
	if e.Kind != event.KindOutcome {
		return
	}
	fi := familyIndex(e.Family)
	if fi < 0 || e.Result == event.ResultUnknown || int(e.Result) >= numResults {
		return
	}
	m.connects[fi][e.Result].Inc()
	if c, ok := m.byPort[e.Dport]; ok {
		c.Inc()
	}
	if e.Result == event.ResultEstablished {
		m.latency.Observe(e.Latency.Seconds())
	}
	if r := e.Why.DropReason; r != "" {
		c, ok := m.drops[r]
		if !ok {
			c = m.dropsVec.WithLabelValues(r)
			m.drops[r] = c
		}
		c.Inc()
	}
}

// setReady sets what /healthz answers: 200 while the programs are
// attached, 503 before and once shutdown has begun, so that an
// orchestrator stops trusting the node's numbers as soon as they stop
// growing.
func (m *Metrics) setReady(ready bool) { m.ready.Store(ready) }

func (m *Metrics) shuttingDown() bool {
	if m.shutdown == nil {
		return false
	}
	select {
	case <-m.shutdown:
		return true
	default:
		return false
	}
}

// Handler serves GET /metrics (Prometheus text or OpenMetrics, as the
// scraper asks) and GET /healthz.
func (m *Metrics) Handler() http.Handler { return m.handler }

func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !m.ready.Load() || m.shuttingDown() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not tracing\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// statsCollector reads the kernel's loss counters at each scrape: one
// read of the per-CPU map serves both series.
type statsCollector struct {
	read                     func() (event.Stats, error)
	lost, untracked, lostDNS *prometheus.Desc
}

func newStatsCollector(read func() (event.Stats, error)) *statsCollector {
	return &statsCollector{
		read: read,
		lost: prometheus.NewDesc("tcpconnect_events_lost_total",
			"Records the kernel dropped because the ring buffer was full (try a larger --buffer-size); their attempts are missing from the other counters.",
			nil, nil),
		untracked: prometheus.NewDesc("tcpconnect_attempts_untracked_total",
			"Attempts whose outcome was not followed because too many were pending at once (try a larger --max-pending); they are missing from tcpconnect_connects_total.",
			nil, nil),
		lostDNS: prometheus.NewDesc("tcpconnect_dns_messages_lost_total",
			"DNS queries and answers (-d) the kernel dropped because the ring buffer was full (try a larger --buffer-size); names of the connects they would have named are missing.",
			nil, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lost
	ch <- c.untracked
	ch <- c.lostDNS
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.read()
	if err != nil {
		err = fmt.Errorf("reading the kernel's counters: %w", err)
		ch <- prometheus.NewInvalidMetric(c.lost, err)
		ch <- prometheus.NewInvalidMetric(c.untracked, err)
		ch <- prometheus.NewInvalidMetric(c.lostDNS, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.LostEvents))
	ch <- prometheus.MustNewConstMetric(c.untracked, prometheus.CounterValue, float64(st.LostAttempts))
	ch <- prometheus.MustNewConstMetric(c.lostDNS, prometheus.CounterValue, float64(st.LostDNS))
}

// kernelCollector serves the connect and latency series from the
// kernel's own counts, read at each scrape (event.KernelMetrics).
type kernelCollector struct {
	read                             func() (event.KernelMetrics, error)
	ports                            []uint16
	connects, byPort, drops, latency *prometheus.Desc
}

func newKernelCollector(read func() (event.KernelMetrics, error), ports []uint16) *kernelCollector {
	return &kernelCollector{
		read:     read,
		ports:    ports,
		connects: prometheus.NewDesc(connectsName, connectsHelp, []string{"family", "result"}, nil),
		byPort:   prometheus.NewDesc(byPortName, byPortHelp, []string{"dport"}, nil),
		drops:    prometheus.NewDesc(syndropsName, syndropsHelp, []string{"reason"}, nil),
		latency:  prometheus.NewDesc(latencyName, latencyHelp, nil, nil),
	}
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connects
	ch <- c.byPort
	ch <- c.drops
	ch <- c.latency
}

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	km, err := c.read()
	if err != nil {
		err = fmt.Errorf("reading the kernel's counts: %w", err)
		for _, d := range []*prometheus.Desc{c.connects, c.byPort, c.drops, c.latency} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	var connects [len(families)][numResults]uint64
	byPort := make(map[uint16]uint64, len(c.ports))
	drops := make(map[string]uint64)
	for _, o := range km.Outcomes {
		fi := familyIndex(o.Family)
		if fi < 0 || o.Result == event.ResultUnknown || int(o.Result) >= numResults {
			continue
		}
		connects[fi][o.Result] += o.Count
		if o.DropReason != "" {
			drops[o.DropReason] += o.Count
		}
		if o.Dport != 0 {
			byPort[o.Dport] += o.Count
		}
	}
	// Every series from the start, as the counters of Observe are.
	for fi, f := range families {
		for r := event.ResultEstablished; int(r) < numResults; r++ {
			ch <- prometheus.MustNewConstMetric(c.connects, prometheus.CounterValue, float64(connects[fi][r]), f.String(), r.String())
		}
	}
	for _, p := range c.ports {
		ch <- prometheus.MustNewConstMetric(c.byPort, prometheus.CounterValue, float64(byPort[p]), strconv.Itoa(int(p)))
	}
	for r, n := range drops {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(n), r)
	}
	// The kernel's buckets are not cumulative; Prometheus's are.
	buckets := make(map[float64]uint64, len(LatencyBuckets))
	var cum uint64
	for i, le := range LatencyBuckets {
		if i < len(km.Buckets) {
			cum += km.Buckets[i]
		}
		buckets[le] = cum
	}
	var total uint64
	for _, n := range km.Buckets {
		total += n
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, total, km.Sum.Seconds(), buckets)
}
