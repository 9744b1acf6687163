// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"strconv"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts(" 80, 443,80")
	if err != nil || len(got) != 2 || got[0] != 80 || got[1] != 443 {
		t.Errorf("ParsePorts: %v %v", got, err)
	}
	for _, bad := range []string{"", "0", "65536", "80,,443", "http", "-1"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
	var many []string
	for p := 1; p <= MaxPorts+1; p++ {
		many = append(many, strconv.Itoa(p))
	}
	if _, err := ParsePorts(strings.Join(many[:MaxPorts], ",")); err != nil {
		t.Errorf("%d ports refused: %v", MaxPorts, err)
	}
	if _, err := ParsePorts(strings.Join(many, ",")); err == nil {
		t.Errorf("%d ports accepted", MaxPorts+1)
	}
	// The bound is the kernel's: both port maps hold MaxPorts entries.
	specs, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ports", "metrics_ports"} {
		if got := specs.Maps[m].MaxEntries; got != uint32(MaxPorts) {
			t.Errorf("map %s holds %d entries, MaxPorts is %d", m, got, MaxPorts)
		}
	}
}
