// SPDX-License-Identifier: Apache-2.0

// Package event holds the Go-native forms of what the tracer reports: one
// connect attempt (Event), the rows of -c (Count), and the counters the
// kernel keeps (Stats, KernelMetrics). The tracer fills them from the
// kernel; the output formats and the metrics read them. It imports
// nothing of BPF.
package event

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Kind says what a record reports.
type Kind uint8

const (
	// KindAttempt is an attempt whose SYN is about to leave.
	KindAttempt Kind = 1
	// KindOutcome is an attempt that ended, or a connect() that failed
	// before any SYN was sent.
	KindOutcome Kind = 2
	// KindPending is an attempt still waiting for its answer when the
	// tracer stopped (user space only).
	KindPending Kind = 3
)

// Result is how an attempt ended, in the vocabulary documented in
// docs/results.md. The tracer derives it from what the kernel saw and the errno.
type Result uint8

const (
	ResultUnknown Result = iota // not known yet: an attempt record
	ResultEstablished
	ResultRefused
	ResultTimeout
	ResultUnreachable
	ResultReset
	ResultAborted
	ResultDenied
	ResultNoPort
	ResultError
	ResultPending
)

var resultNames = [...]string{
	ResultUnknown:     "",
	ResultEstablished: "established",
	ResultRefused:     "refused",
	ResultTimeout:     "timeout",
	ResultUnreachable: "unreachable",
	ResultReset:       "reset",
	ResultAborted:     "aborted",
	ResultDenied:      "denied",
	ResultNoPort:      "no-port",
	ResultError:       "error",
	ResultPending:     "pending",
}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Event is one connect attempt, decoded. It holds no pointers into the
// ring buffer and its fields are values, so one Event can be reused for
// every record without allocating.
type Event struct {
	Kind Kind
	// Time is the wall-clock time the attempt started (the SYN, or the
	// connect() call for attempts that failed before any SYN).
	Time time.Time
	// Mono is the same instant on CLOCK_MONOTONIC, in ns.
	Mono uint64
	PID  uint32 // process (thread group) ID
	TID  uint32 // thread ID
	UID  uint32
	PPID uint32 // the parent process
	// PIDNsPID is the process's PID inside its own PID namespace.
	PIDNsPID uint32
	// CgroupID is the cgroup v2 id of the task's cgroup (the inode
	// number of its directory under the cgroup v2 mount).
	CgroupID uint64
	// NetnsIno and MntnsIno are the inode numbers of the task's network
	// and mount namespaces (stat -L /proc/PID/ns/net).
	NetnsIno, MntnsIno uint32
	// NetnsCookie identifies the network namespace for the whole boot:
	// inode numbers are reused once a namespace is gone. Not printed;
	// what -d's names are keyed by.
	NetnsCookie uint64
	// Comm is the thread's name as the kernel holds it: untrusted bytes,
	// NUL-padded. Use CommBytes.
	Comm         [16]byte
	Family       Family
	Saddr, Daddr netip.Addr
	Sport, Dport uint16
	// Outcome fields, set on KindOutcome and KindPending records.
	Result  Result
	Errno   unix.Errno
	Latency time.Duration

	// Why the attempt went where it went and ended as it did (outcome
	// records; see Why).
	Why Why

	// ExecID tells two execs of one PID apart (0: the tracer knew no
	// exec of the process); it links the event to Proc.
	ExecID uint64
	// Proc is the process that made the attempt, as of its last exec;
	// nil when unknown. Shared between events: never modify it.
	Proc *Process
}

// Why is what the kernel saw happen to an attempt's SYNs on this host.
type Why struct {
	// NatDaddr and NatDport are where the SYN really went after local NAT
	// (DNAT in this host's OUTPUT path); NatDaddr is invalid when the
	// destination was not translated.
	NatDaddr netip.Addr
	NatDport uint16
	// SynRetransmits counts the SYN's retransmissions, sent or dropped.
	SynRetransmits uint16
	// DropReason is the kernel's reason (enum skb_drop_reason, without
	// its SKB_DROP_REASON_ prefix) for the last SYN this host dropped;
	// "" when none was dropped here.
	DropReason string
	// ICMP says an ICMP error about the SYN arrived: its type and code,
	// and who sent it (often a router, not the destination).
	ICMP     bool
	ICMPType uint8
	ICMPCode uint8
	ICMPFrom netip.Addr
}

// Process is who made an attempt: captured in the kernel when the
// process exec'd (or read from /proc for processes older than the
// tracer), so it holds even after the process exited. Every string is
// untrusted, raw bytes from the traced system: escape before printing.
type Process struct {
	// Exe is the path of the executable as the process's mount
	// namespace and root see it (for a script: its interpreter). It
	// starts with ".../" when the path was longer than the tracer keeps
	// (internal/tracer: ExeMax), and is "" when unknown.
	Exe string
	// Args is the command line (argv, argv[0] first), at most ArgsMax
	// bytes of it; ArgsCut says that it was longer (the last argument
	// may then be partial) and ArgsLen how long it was in bytes.
	Args    []string
	ArgsCut bool
	ArgsLen int
	// ParentComm is the parent's name when the process first made an
	// attempt; ParentExe its executable when the tracer knew it ("").
	ParentComm string
	ParentExe  string
	// FromProcfs says the data was read from /proc at start, after the
	// exec, rather than captured at the exec itself.
	FromProcfs bool
}

// CommBytes returns the process name without its NUL padding.
func (e *Event) CommBytes() []byte {
	for i, c := range e.Comm {
		if c == 0 {
			return e.Comm[:i]
		}
	}
	return e.Comm[:]
}

// Family is the address family of the connecting socket. An IPv6 socket
// that dials an IPv4-mapped address (::ffff:a.b.c.d) is IPv6.
type Family uint8

const (
	FamilyAny  Family = 0
	FamilyIPv4 Family = 4
	FamilyIPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case FamilyIPv4:
		return "ipv4"
	case FamilyIPv6:
		return "ipv6"
	}
	return "any"
}

// Count is one row of -c: the attempts from one source address to one
// destination address and port.
type Count struct {
	Family       Family
	Saddr, Daddr netip.Addr
	Dport        uint16
	Connects     uint64
}

// DNSMessage is one DNS message that a socket of the host sent to port 53
// (a query) or received from port 53 (an answer), with who owns the
// socket: what the tracer decodes (-d) and the name cache believes or not.
type DNSMessage struct {
	// Socket identifies the socket: its kernel cookie, unique while the
	// host runs.
	Socket uint64
	// Netns is the socket's network namespace: its cookie, which, unlike
	// its inode number, no later namespace reuses (a name must not pass
	// from a container that is gone to the next one). UID is the user
	// who created the socket.
	Netns uint64
	UID   uint32
	// Server is a query's destination or an answer's source.
	Server netip.AddrPort
	// Query says the socket sent the message; else it received it.
	Query bool
	// TCP says Msg is a TCP segment's payload: messages that each start
	// with a two-byte length.
	TCP bool
	// Msg is reused by the tracer after the call that receives it.
	Msg []byte
}

// Stats are the tracer's counters, kept by the kernel.
type Stats struct {
	LostEvents   uint64 // records dropped: ring buffer full
	LostAttempts uint64 // attempts not remembered: too many pending
	LostCounts   uint64 // attempts not counted: count map full
	Wakeups      uint64 // reader wakeups forced by the programs
	LostDNS      uint64 // DNS answers dropped: ring buffer full (-d)
	LostProcs    uint64 // processes not remembered or not sent: map or ring buffer full
}

// OutcomeCount is how many attempts ended one way, counted in the kernel.
type OutcomeCount struct {
	Family Family
	Result Result
	Dport  uint16 // 0 unless one of the ports counted on their own
	// DropReason is Why.DropReason of these attempts.
	DropReason string
	Count      uint64
}

// KernelMetrics are the counts of ended attempts that the kernel keeps
// instead of sending a record for each (--metrics-addr with --output
// none).
type KernelMetrics struct {
	Outcomes []OutcomeCount
	// Buckets[i] counts established attempts whose latency is at most
	// the i-th bound of the histogram (and above the bound before); the
	// last one, the others.
	Buckets []uint64
	Sum     time.Duration
}
