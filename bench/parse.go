// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// portKey identifies an attempt well enough to match it with a tracer's
// line: the destination port is unique to one benchmark run (a listener
// or a closed port of its own), and the kernel does not give one source
// port to two attempts to that destination at the same time. Within a run
// a pair can repeat (ports are reused), so matching counts per key.
type portKey struct {
	sport, dport uint16
}

// parsed is what a tracer printed during one run.
type parsed struct {
	lines   int             // event lines (header excluded)
	garbled int             // lines that are not a well-formed event
	events  map[portKey]int // per (sport, dport); table and JSON output
	// counts holds, for -c output, connects per destination port.
	counts map[uint16]uint64
	// firstGarbled keeps one bad line for the report.
	firstGarbled string
	// lost is what the tracer said on stdout that it lost (bpftrace).
	lost uint64
}

func newParsed() *parsed {
	return &parsed{events: make(map[portKey]int), counts: make(map[uint16]uint64)}
}

func (p *parsed) bad(line string) {
	p.garbled++
	if p.firstGarbled == "" {
		p.firstGarbled = line
	}
}

// scanLines calls fn for each line of r; lines can be long when garbled,
// so the buffer grows up to 1 MiB.
func scanLines(r io.Reader, fn func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading tracer output: %w", err)
	}
	return nil
}

// parseTableLine checks one row of the default table (TIME PID COMM SADDR
// SPORT DADDR DPORT, as tcpconnect and the bpftrace reference print it)
// and returns its ports. COMM may contain spaces, so the address and port
// columns are taken from the right.
func parseTableLine(line string) (portKey, bool) {
	f := strings.Fields(line)
	if len(f) < 7 {
		return portKey{}, false
	}
	if !isClock(f[0]) {
		return portKey{}, false
	}
	if _, err := strconv.ParseUint(f[1], 10, 32); err != nil {
		return portKey{}, false
	}
	n := len(f)
	if _, err := netip.ParseAddr(f[n-4]); err != nil {
		return portKey{}, false
	}
	if _, err := netip.ParseAddr(f[n-2]); err != nil {
		return portKey{}, false
	}
	sport, err1 := strconv.ParseUint(f[n-3], 10, 16)
	dport, err2 := strconv.ParseUint(f[n-1], 10, 16)
	if err1 != nil || err2 != nil {
		return portKey{}, false
	}
	return portKey{uint16(sport), uint16(dport)}, true
}

// isClock reports whether s is HH:MM:SS.
func isClock(s string) bool {
	if len(s) != 8 || s[2] != ':' || s[5] != ':' {
		return false
	}
	for _, i := range []int{0, 1, 3, 4, 6, 7} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseTable reads tcpconnect's table. The header line is skipped
// wherever it appears.
func parseTable(r io.Reader) (*parsed, error) { return parseTableOf(r, false) }

// parseBpftrace reads the bpftrace reference's table, which bpftrace
// frames with its own lines on stdout ("Attaching 2 probes...", and an
// empty line at exit).
func parseBpftrace(r io.Reader) (*parsed, error) { return parseTableOf(r, true) }

func parseTableOf(r io.Reader, bpftrace bool) (*parsed, error) {
	p := newParsed()
	err := scanLines(r, func(line string) {
		if strings.HasPrefix(line, "TIME ") {
			return
		}
		if bpftrace && (line == "" || strings.HasPrefix(line, "Attaching ")) {
			return
		}
		// bpftrace reports records its perf buffer dropped on stdout.
		if m := bpftraceLostRE.FindStringSubmatch(line); bpftrace && m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			p.lost += n
			return
		}
		p.lines++
		k, ok := parseTableLine(line)
		if !ok {
			p.bad(line)
			return
		}
		p.events[k]++
	})
	return p, err
}

// jsonEvent holds the keys of a --json line that matching needs; the rest
// are checked for presence only.
type jsonEvent struct {
	Time    *string `json:"time"`
	PID     *uint32 `json:"pid"`
	Comm    *string `json:"comm"`
	Family  *string `json:"family"`
	Saddr   *string `json:"saddr"`
	Sport   *uint16 `json:"sport"`
	Daddr   *string `json:"daddr"`
	Dport   *uint16 `json:"dport"`
	Backend *string `json:"backend"`
}

func parseJSONLine(line string) (portKey, bool) {
	var e jsonEvent
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return portKey{}, false
	}
	if e.Time == nil || e.PID == nil || e.Comm == nil || e.Family == nil || e.Saddr == nil ||
		e.Sport == nil || e.Daddr == nil || e.Dport == nil || e.Backend == nil {
		return portKey{}, false
	}
	if _, err := netip.ParseAddr(*e.Saddr); err != nil {
		return portKey{}, false
	}
	if _, err := netip.ParseAddr(*e.Daddr); err != nil {
		return portKey{}, false
	}
	return portKey{*e.Sport, *e.Dport}, true
}

// parseJSON reads --json output.
func parseJSON(r io.Reader) (*parsed, error) {
	p := newParsed()
	err := scanLines(r, func(line string) {
		p.lines++
		k, ok := parseJSONLine(line)
		if !ok {
			p.bad(line)
			return
		}
		p.events[k]++
	})
	return p, err
}

// parseCounts reads the table that -c prints at exit: SADDR DADDR DPORT
// CONNECTS.
func parseCounts(r io.Reader) (*parsed, error) {
	p := newParsed()
	err := scanLines(r, func(line string) {
		if strings.HasPrefix(line, "SADDR ") {
			return
		}
		p.lines++
		f := strings.Fields(line)
		if len(f) != 4 {
			p.bad(line)
			return
		}
		_, err1 := netip.ParseAddr(f[0])
		_, err2 := netip.ParseAddr(f[1])
		dport, err3 := strconv.ParseUint(f[2], 10, 16)
		n, err4 := strconv.ParseUint(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			p.bad(line)
			return
		}
		p.counts[uint16(dport)] += n
	})
	return p, err
}

// match compares what the load made with what a tracer reported.
type match struct {
	Attempts int `json:"attempts"`
	Matched  int `json:"matched"`
	Missing  int `json:"missing"`
	// Extra are reports to a benchmark port beyond its attempts
	// (duplicates); Foreign are reports to other ports (other traffic on
	// the host), which are ignored.
	Extra   int `json:"extra"`
	Foreign int `json:"foreign"`
}

func (m *match) add(o match) {
	m.Attempts += o.Attempts
	m.Matched += o.Matched
	m.Missing += o.Missing
	m.Extra += o.Extra
	m.Foreign += o.Foreign
}

// matchEvents matches per-attempt reports by (source port, destination
// port), as a multiset.
func matchEvents(attempts, events map[portKey]int, dports map[uint16]bool) match {
	var m match
	for k, n := range attempts {
		m.Attempts += n
		got := events[k]
		m.Matched += min(n, got)
		m.Missing += max(n-got, 0)
	}
	for k, got := range events {
		if !dports[k.dport] {
			m.Foreign += got
			continue
		}
		m.Extra += max(got-attempts[k], 0)
	}
	return m
}

// matchCounts matches -c output, which has no source port: per
// destination port, the count against the attempts made to it.
func matchCounts(attempts map[portKey]int, counts map[uint16]uint64, dports map[uint16]bool) match {
	var m match
	per := make(map[uint16]int)
	for k, n := range attempts {
		per[k.dport] += n
		m.Attempts += n
	}
	for d, n := range per {
		got := int(counts[d])
		m.Matched += min(n, got)
		m.Missing += max(n-got, 0)
	}
	for d, got := range counts {
		if !dports[d] {
			m.Foreign += int(got)
			continue
		}
		m.Extra += max(int(got)-per[d], 0)
	}
	return m
}

// matchTotal compares a total count (metrics-only mode, which has no
// per-port series for the load's ports) with the attempts made: attempts
// from elsewhere on the host during the run would count as extra.
func matchTotal(attempts map[portKey]int, total uint64) match {
	var m match
	for _, n := range attempts {
		m.Attempts += n
	}
	m.Matched = min(m.Attempts, int(total))
	m.Missing = max(m.Attempts-int(total), 0)
	m.Extra = max(int(total)-m.Attempts, 0)
	return m
}

// parseNothing is the parser of a tracer that prints nothing per event.
func parseNothing(io.Reader) (*parsed, error) { return &parsed{}, nil }

// bpftraceLostRE matches bpftrace's report of dropped perf buffer records.
var bpftraceLostRE = regexp.MustCompile(`^Lost (\d+) events$`)

// summaryRE matches the line tcpconnect prints on stderr at exit.
var summaryRE = regexp.MustCompile(`^tcpconnect: (\d+) events printed, (\d+) lost`)

// parseSummary returns the printed and lost counts of tcpconnect's exit
// line among stderr lines.
func parseSummary(lines []string) (printed, lost uint64, ok bool) {
	for _, l := range lines {
		m := summaryRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		printed, _ = strconv.ParseUint(m[1], 10, 64)
		lost, _ = strconv.ParseUint(m[2], 10, 64)
		ok = true
	}
	return printed, lost, ok
}
