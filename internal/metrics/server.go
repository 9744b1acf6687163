// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// Source is what a scrape reads: the attached tracer's counters.
type Source interface {
	// Stats returns the loss and wakeup counters.
	Stats() (event.Stats, error)
	// Metrics returns the kernel's counts of ended attempts; it is only
	// called when ServerConfig.Kernel is set.
	Metrics() (event.KernelMetrics, error)
}

// ServerConfig says where to serve and what.
type ServerConfig struct {
	Config
	// Addr is HOST:PORT or :PORT (port 0: the kernel picks one; see
	// Server.Addr).
	Addr string
	// Kernel makes the connect and latency series come from the kernel's
	// counts (Source.Metrics) instead of from Observe.
	Kernel bool
	// WebConfigFile, if set, is a Prometheus exporter-toolkit web
	// configuration file (TLS, basic auth), as --web.config.file of
	// Prometheus's exporters.
	WebConfigFile string
	// ErrorLog receives the HTTP server's errors and the warning of a
	// server that stopped on its own.
	ErrorLog io.Writer
}

// Server serves the metrics and the health check of one tracer, from
// Serve until Stop.
type Server struct {
	m      *Metrics
	srv    *http.Server
	addr   net.Addr
	served chan struct{}
	src    *sourceReader
}

// Serve starts serving the metrics of src on cfg.Addr. /healthz answers
// 200 from now on and 503 as soon as ctx is done, when shutdown begins.
// cfg.Stats and cfg.Kernel are set from src.
func Serve(ctx context.Context, cfg ServerConfig, src Source) (*Server, error) {
	r := &sourceReader{src: src}
	cfg.Config.Stats = r.stats
	cfg.Config.Kernel = nil
	if cfg.Kernel {
		cfg.Config.Kernel = r.kernel
	}
	m, err := New(cfg.Config)
	if err != nil {
		return nil, err
	}
	// Set before the server starts: no handler reads it before then.
	m.shutdown = ctx.Done()
	if cfg.WebConfigFile != "" {
		// Checked before listening: a broken file is a failed start, not
		// an endpoint that refuses every scrape.
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			return nil, fmt.Errorf("--web.config.file %s: %w", cfg.WebConfigFile, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	errLog := cfg.ErrorLog
	if errLog == nil {
		errLog = io.Discard
	}
	// Whoever can reach the port must not be able to starve the tool nor
	// the scraper: connections beyond the bounds are closed as soon as they are
	// accepted (left in the accept queue, thousands of them would stand
	// before the next scrape once a flood ends), and every connection,
	// idle or slow, is closed within the timeouts.
	bounded := &boundedListener{Listener: ln, slots: make(chan struct{}, MaxConns), perSource: MaxConnsPerSource, bySrc: map[netip.Addr]int{}}
	s := &Server{
		m: m,
		srv: &http.Server{
			Handler:           m.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    8 << 10,
			ErrorLog:          log.New(errLog, "tcpconnect: metrics: ", 0),
		},
		// The address actually bound: with port 0 the kernel picks it.
		addr:   ln.Addr(),
		served: make(chan struct{}),
		src:    r,
	}
	webConfig := cfg.WebConfigFile
	flags := &web.FlagConfig{WebConfigFile: &webConfig}
	// exporter-toolkit logs at Info each start; only its warnings matter.
	logger := slog.New(slog.NewTextHandler(errLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		defer close(s.served)
		if err := web.Serve(bounded, s.srv, flags, logger); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(errLog, "tcpconnect: warning: metrics server stopped: %v\n", err)
		}
	}()
	m.setReady(true)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Observe counts one event (see Metrics.Observe).
func (s *Server) Observe(e *event.Event) { s.m.Observe(e) }

// Stop marks the node unhealthy, shuts the server down and stops reading
// the source; call it before the tracer behind the source is closed.
func (s *Server) Stop() {
	s.m.setReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.served
	s.src.detach()
}

// sourceReader reads the source's counters for scrapes, until detach: a
// scrape still running when the tracer closes must not touch its maps.
// After detach, scrapes get the last values read.
type sourceReader struct {
	mu         sync.Mutex
	src        Source
	last       event.Stats
	lastKernel event.KernelMetrics
}

func (r *sourceReader) stats() (event.Stats, error) {
	return readSource(r, &r.last, Source.Stats)
}

func (r *sourceReader) kernel() (event.KernelMetrics, error) {
	return readSource(r, &r.lastKernel, Source.Metrics)
}

// readSource calls get on the source while it is attached, remembering
// the value in last, which it returns once the source is detached.
func readSource[T any](r *sourceReader, last *T, get func(Source) (T, error)) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src == nil {
		return *last, nil
	}
	v, err := get(r.src)
	if err != nil {
		return v, err
	}
	*last = v
	return v, nil
}

func (r *sourceReader) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.src = nil
}

// MaxConns bounds the endpoint's open connections: a Prometheus server or
// two, a kubelet probe, a person with curl. MaxConnsPerSource bounds
// those of one source, so that whoever floods the port from one place
// (every process on the node counts as one: loopback) leaves the others
// their slots: the scraper and the probe, which come from elsewhere.
const (
	MaxConns          = 32
	MaxConnsPerSource = 8
)

// boundedListener accepts at most cap(slots) connections at once, at most
// perSource of them from one source, and closes the others at once.
type boundedListener struct {
	net.Listener
	slots     chan struct{}
	perSource int

	mu    sync.Mutex
	bySrc map[netip.Addr]int

	// Only Accept's goroutine uses these.
	localAddrs map[netip.Addr]bool
	localRead  time.Time
}

// source is what a peer's connections are counted by: its address; and
// all of this host as one: loopback (any local user can bind any of
// 127/8) and every address of the host's interfaces (docker0, cni0, …:
// any local user can bind those too).
func (l *boundedListener) source(c net.Conn) netip.Addr {
	remote, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	addr := remote.Addr().Unmap()
	if addr.IsLoopback() || addr == local.Addr().Unmap() || l.isLocal(addr) {
		return netip.IPv6Loopback()
	}
	return addr
}

// isLocal says whether addr is one of the host's. The list is read
// again when an address is not in it, at most every localAddrsEvery.
func (l *boundedListener) isLocal(addr netip.Addr) bool {
	if l.localAddrs[addr] {
		return true
	}
	if time.Since(l.localRead) < localAddrsEvery {
		return false
	}
	l.localRead = time.Now()
	l.localAddrs = map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			l.localAddrs[p.Addr().Unmap()] = true
		}
	}
	return l.localAddrs[addr]
}

// localAddrsEvery bounds how often a connection from an unknown address
// makes the listener read the host's addresses.
const localAddrsEvery = 10 * time.Second

func (l *boundedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := l.source(c)
		l.mu.Lock()
		ok := l.bySrc[src] < l.perSource
		if ok {
			select {
			case l.slots <- struct{}{}:
				l.bySrc[src]++
			default:
				ok = false
			}
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &boundedConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.bySrc[src]--; l.bySrc[src] == 0 {
				delete(l.bySrc, src)
			}
			l.mu.Unlock()
			<-l.slots
		}}, nil
	}
}

type boundedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *boundedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
