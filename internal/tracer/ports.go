// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxPorts is how many ports a port list may hold (Config.Ports,
// Config.MetricsPorts): the size of the kernel's port maps.
const MaxPorts = int(tcpconnectLimitsMAX_PORTS)

// ParsePorts reads a comma-separated list of destination ports, as -P and
// --metrics-ports take it: each 1-65535, spaces around them allowed, a
// port given twice kept once, at most MaxPorts.
func ParsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("invalid port %q: want 1-65535", f)
		}
		if !slices.Contains(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	if len(ports) == 0 {
		return nil, errors.New("no port given")
	}
	if len(ports) > MaxPorts {
		return nil, fmt.Errorf("%d ports given: at most %d", len(ports), MaxPorts)
	}
	return ports, nil
}
