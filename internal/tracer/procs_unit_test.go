// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestProcLayout: the Go side's bounds are the object's.
func TestProcLayout(t *testing.T) {
	var p tcpconnectProc
	if len(p.Exe) != exeBuf || len(p.Args) != argsMax {
		t.Errorf("struct proc has exe[%d] args[%d], Go expects %d and %d", len(p.Exe), len(p.Args), exeBuf, argsMax)
	}
	if unsafe.Offsetof(tcpconnectProcRecord{}.Kind) != 0 {
		t.Error("proc_record's kind is not its first byte")
	}
}

func TestExeEncoding(t *testing.T) {
	for _, path := range []string{"/", "/bin/true", "/dir with spaces/ünï\xff\x1b[2J\nx/prog"} {
		enc, ok := exeComponents(path)
		if !ok {
			t.Errorf("%q not encodable", path)
			continue
		}
		if got := exePath(enc, 0); got != path {
			t.Errorf("round trip of %q gave %q", path, got)
		}
	}
	// Leaf first, as the kernel's walk writes it.
	if enc, _ := exeComponents("/usr/bin/curl"); string(enc) != "curl\x00bin\x00usr\x00" {
		t.Errorf("encoding %q", enc)
	}
	for _, bad := range []string{"", "bin/true", "/usr/../bin", "/a//b", "/a/", "/" + strings.Repeat("x/", ExeMax)} {
		if _, ok := exeComponents(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := exePath([]byte("curl\x00bin\x00"), procExeCut); got != ".../bin/curl" {
		t.Errorf("cut path %q", got)
	}
	if got := exePath(nil, procNoExe); got != "" {
		t.Errorf("no exe gave %q", got)
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		total int
		want  []string
		cut   bool
	}{
		{"a\x00b c\x00\x00", 7, []string{"a", "b c", ""}, false},
		{"", 0, []string{}, false},
		{"a\x00bb", 100, []string{"a", "bb"}, true},
		{"a\x00", 100, []string{"a", ""}, true},
	} {
		got, cut := splitArgs([]byte(tc.raw), tc.total)
		if !slices.Equal(got, tc.want) || cut != tc.cut {
			t.Errorf("splitArgs(%q, %d) = %q %v, want %q %v", tc.raw, tc.total, got, cut, tc.want, tc.cut)
		}
	}
}

func TestProcCacheBounded(t *testing.T) {
	c := newProcCache(4, 1<<20)
	for pid := range uint32(10) {
		c.put(pid, uint64(pid)+100, nil)
	}
	if len(c.entries) > 4 || len(c.order) > 4 {
		t.Errorf("cache grew to %d/%d", len(c.entries), len(c.order))
	}
	if _, ok := c.entries[9]; !ok {
		t.Error("the newest entry was dropped")
	}
	if c.get(9, 1) != nil || c.entries[9].execID != 109 {
		t.Error("an entry of another exec matched")
	}
}

// TestProcCacheBytesBounded: processes with the most expensive command
// line the kernel sends (2048 empty arguments) do not grow the cache
// past its bytes bound, at any count.
func TestProcCacheBytesBounded(t *testing.T) {
	const maxBytes = 4 << 20
	c := newProcCache(65536, maxBytes)
	raw := make([]byte, argsMax)
	for pid := range uint32(20000) {
		args, _ := splitArgs(raw, len(raw))
		c.put(pid, uint64(pid), &event.Process{Exe: "/usr/bin/x", Args: args})
		if c.bytes > maxBytes {
			t.Fatalf("after %d processes: %d bytes, bound %d", pid+1, c.bytes, maxBytes)
		}
	}
	if len(c.entries) != len(c.order) || len(c.entries) < 2 {
		t.Errorf("entries %d, order %d", len(c.entries), len(c.order))
	}
	// A replaced entry is the newest: a full cache keeps it.
	first := c.order[0]
	c.put(first, 7, &event.Process{Exe: "/bin/replaced"})
	if c.order[len(c.order)-1] != first || c.get(first, 7) == nil {
		t.Errorf("the replaced process %d is not the newest", first)
	}
	// Replacing an entry keeps the count right.
	before := c.bytes
	last := c.order[len(c.order)-1]
	c.put(last, 1, nil)
	if c.bytes >= before {
		t.Errorf("replacing a process by a smaller one: %d bytes, was %d", c.bytes, before)
	}
	var sum int
	for _, e := range c.entries {
		sum += e.cost
	}
	if sum != c.bytes {
		t.Errorf("bytes %d, sum of costs %d", c.bytes, sum)
	}
}
