// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/tracer"
)

// FuzzFlags: any command line parses to options within the documented
// bounds, or to a usage error (exit 2); never a panic.
func FuzzFlags(f *testing.F) {
	for _, s := range []string{
		"-tU -p 181 -P 80,81 -u 1000 -4",
		"--max-pending 4294967297",
		"--min-latency NaN",
		"--buffer-size 9223372036854775807M",
		"-P " + portList(65),
		"--container=4F1C -x -d",
		"--metrics-addr :9464 --metrics-ports 80,443 -q",
		"--dns-cache-size 1e9 -r --failed",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		// --netns opens the file it names; a fuzzer must not open
		// devices.
		if strings.Contains(line, "netns") {
			return
		}
		o, err := parseFlags(strings.Fields(line), io.Discard)
		if err != nil {
			var u errUsage
			if !errors.As(err, &u) && !errors.Is(err, errHelp) {
				t.Fatalf("%q: error %v is not a usage error", line, err)
			}
			return
		}
		c := o.tracer
		if c.MaxPending < 1 || c.MaxPending > maxMaxPending || len(c.Ports) > tracer.MaxPorts ||
			c.MinLatency < 0 || c.BufferSize < 4096 || c.BufferSize > 1<<30 || c.BufferSize&(c.BufferSize-1) != 0 ||
			o.dnsCacheSize < 1 || o.dnsCacheSize > maxDNSCacheSize {
			t.Errorf("%q parsed out of bounds: %+v", line, o)
		}
	})
}
