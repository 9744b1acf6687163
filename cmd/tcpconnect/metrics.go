// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/tcpconnect/tcpconnect/internal/buildinfo"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/metrics"
	"github.com/tcpconnect/tcpconnect/internal/output"
	"github.com/tcpconnect/tcpconnect/internal/tracer"
)

// Output formats (--output).
const (
	outputTable = "table"
	outputJSON  = "json"
	outputNone  = "none"
)

// daemonOptions are the flags for running as a fleet daemon: what to
// print, and the Prometheus endpoint.
type daemonOptions struct {
	output       string // table, json or none
	quiet        bool   // -q: --output none
	metricsAddr  string
	metricsPorts string
	ports        []uint16 // metricsPorts, parsed
	webConfig    string   // --web.config.file: TLS and basic auth
}

// addDaemonFlags declares the daemon flags on fs; fillDaemon checks them
// once fs is parsed.
func addDaemonFlags(fs *pflag.FlagSet, d *daemonOptions) {
	fs.StringVar(&d.output, "output", outputTable, "per-event output `FORMAT`: table, json (as --json) or none (for daemons: metrics and warnings only)")
	fs.BoolVarP(&d.quiet, "quiet", "q", false, "same as --output none")
	fs.StringVar(&d.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (like :9464) and health at /healthz; implies -r")
	fs.StringVar(&d.metricsPorts, "metrics-ports", "", fmt.Sprintf("also count attempts per destination port, for these `PORTS` only (comma-separated, up to %d)", tracer.MaxPorts))
	fs.StringVar(&d.webConfig, "web.config.file", "", "TLS and basic auth for --metrics-addr: a Prometheus exporter-toolkit web config `FILE`")
}

// fillDaemon settles the output format and the metrics options. changed
// reports whether a flag was given on the command line.
func (o *options) fillDaemon(changed func(name string) bool) error {
	d := &o.daemon
	switch d.output {
	case outputTable, outputJSON, outputNone:
	default:
		return usagef("invalid --output %q: want table, json or none", d.output)
	}
	if d.quiet {
		if changed("output") && d.output != outputNone {
			return usagef("-q means --output none; it cannot be combined with --output %s", d.output)
		}
		d.output = outputNone
	}
	if o.json {
		if d.output != outputJSON && (changed("output") || d.quiet) {
			return usagef("--json means --output json; it cannot be combined with --output %s", d.output)
		}
		d.output = outputJSON
	}
	o.json = d.output == outputJSON
	if o.count && d.output == outputNone {
		return usagef("-c prints its counts at the end; --output none would hide them")
	}
	if d.metricsPorts != "" {
		if d.metricsAddr == "" {
			return usagef("--metrics-ports needs --metrics-addr")
		}
		ports, err := tracer.ParsePorts(d.metricsPorts)
		if err != nil {
			return usagef("invalid --metrics-ports %q: %v", d.metricsPorts, err)
		}
		d.ports = ports
	}
	if d.webConfig != "" && d.metricsAddr == "" {
		return usagef("--web.config.file needs --metrics-addr")
	}
	if d.metricsAddr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(d.metricsAddr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return usagef("invalid --metrics-addr %q: want HOST:PORT or :PORT (like :9464)", d.metricsAddr)
	}
	if o.count {
		return usagef("--metrics-addr counts outcomes as they happen; it cannot be combined with -c")
	}
	// The metrics count results, which only a tracer that follows each
	// attempt to its end knows. The printed lines follow too: they come
	// at each attempt's end, with its result, as with -r.
	o.results = true
	o.tracer.Outcomes = true
	if d.output == outputNone {
		// Nothing is printed: the kernel counts, and no record crosses
		// into user space.
		o.tracer.KernelMetrics = true
		o.tracer.MetricsPorts = d.ports
		for _, b := range metrics.LatencyBuckets {
			o.tracer.LatencyBounds = append(o.tracer.LatencyBounds, time.Duration(b*float64(time.Second)))
		}
	}
	return nil
}

// noOutput is --output none.
type noOutput struct{}

func (noOutput) Header() error            { return nil }
func (noOutput) Event(*event.Event) error { return nil }
func (noOutput) Flush() error             { return nil }

// metricsPrinter counts each event before printing it.
type metricsPrinter struct {
	output.Printer
	m *metrics.Server
}

func (p metricsPrinter) Event(e *event.Event) error {
	p.m.Observe(e)
	return p.Printer.Event(e)
}

// serveMetrics starts the --metrics-addr endpoint for the attached tracer
// t and returns p wrapped to count events, and a stop function to call
// before t is closed. Without --metrics-addr it returns p unchanged.
func serveMetrics(ctx context.Context, o *options, t *tracer.Tracer, p output.Printer, stderr io.Writer) (output.Printer, func(), error) {
	if o.daemon.metricsAddr == "" {
		return p, func() {}, nil
	}
	labels := prometheus.Labels{}
	// Set from the downward API by the DaemonSet, so that each node's
	// series stay apart wherever they are collected.
	if node := os.Getenv("NODE_NAME"); node != "" {
		labels["node"] = node
	}
	build := buildinfo.Get()
	srv, err := metrics.Serve(ctx, metrics.ServerConfig{
		Config: metrics.Config{
			Backend:     string(t.Backend()),
			Version:     build.Version,
			Commit:      build.Commit,
			GoVersion:   build.GoVersion,
			ConstLabels: labels,
			Ports:       o.daemon.ports,
		},
		Addr:          o.daemon.metricsAddr,
		Kernel:        o.tracer.KernelMetrics,
		WebConfigFile: o.daemon.webConfig,
		ErrorLog:      stderr,
	}, t)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(stderr, "tcpconnect: serving metrics on http://%s/metrics\n", srv.Addr())
	return metricsPrinter{Printer: p, m: srv}, srv.Stop, nil
}
