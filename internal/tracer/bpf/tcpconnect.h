/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between the BPF programs and the Go side. Go gets these
 * types and enums from bpf2go (the -type list in gen.go), so they are
 * defined only here. Fixed-width fields, explicit padding, addresses in network
 * order, ports in host order.
 */
#ifndef TCPCONNECT_H
#define TCPCONNECT_H

#define TASK_COMM_LEN 16

/* Sizes that user space checks its input against (bpf2go gives Go the
 * enum): a port list (-P, --metrics-ports) fills one of the port maps. */
enum limits {
	MAX_PORTS = 64,
	/* Steps of the walk up an executable's path (struct proc): one per
	 * directory and per mount crossing, and the last one finds the root,
	 * so a path of PATH_DEPTH - 1 levels is complete. */
	PATH_DEPTH = 64,
};

/* What a record on the ring buffer is: its first byte, in every record,
 * so that the reader knows the record's type before reading any more. */
enum record_kind {
	/* struct event: the SYN is about to leave, the attempt has its
	 * source port. */
	RECORD_ATTEMPT = 1,
	/* struct event: the attempt ended (or connect() failed before any
	 * SYN was sent). */
	RECORD_OUTCOME = 2,
	/* struct dns_record. */
	RECORD_DNS = 3,
	/* struct proc_record: who made the attempts that follow it. */
	RECORD_PROCESS = 4,
};

/* How an attempt ended, as the kernel saw it. User space turns this and
 * the errno into the documented RESULT vocabulary. */
enum outcome {
	OUTCOME_NONE = 0,
	/* SYN_SENT -> ESTABLISHED. */
	OUTCOME_ESTABLISHED = 1,
	/* SYN_SENT -> CLOSE with sk_err, or connect() returned an error
	 * after the SYN was sent (err holds the errno). */
	OUTCOME_FAILED = 2,
	/* SYN_SENT -> CLOSE with no error: closed before the answer. */
	OUTCOME_CLOSED = 3,
	/* connect() failed before any SYN was sent (err holds the errno). */
	OUTCOME_SYNC_FAILED = 4,
};

struct event {
	__u8 kind;    /* enum record_kind: RECORD_ATTEMPT or RECORD_OUTCOME */
	__u8 outcome; /* enum outcome */
	__u16 family; /* AF_INET or AF_INET6: the socket's family */
	__u16 sport;
	__u16 dport;
	/* CLOCK_MONOTONIC ns when the attempt started: the SYN, or the
	 * connect() call for attempts that failed before any SYN. */
	__u64 start_ns;
	/* Outcome records: start to outcome, in ns. */
	__u64 latency_ns;
	/* The task's cgroup v2 id (the cgroup directory's inode number). */
	__u64 cgroup_id;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 uid;
	__s32 err; /* positive errno of a failed outcome, else 0 */
	__u32 ppid;       /* the parent process (real_parent's tgid) */
	__u32 pid_ns_pid; /* pid as the process sees it in its PID namespace */
	__u32 netns_ino;  /* network namespace inode (stat -L /proc/PID/ns/net) */
	__u32 mntns_ino;  /* mount namespace inode */
	char comm[TASK_COMM_LEN];
	/* The network namespace's cookie: unlike its inode number, never
	 * reused while the host runs (a new namespace gets the lowest free
	 * inode number, often a namespace's that just went). */
	__u64 netns_cookie;

	/* ---- why: what happened to the attempt's SYNs (outcome mode) ----
	 * Filled while the attempt is in map attempts, by the packet hooks
	 * (see "why" in tcpconnect.bpf.c). */
	/* The SYN's destination as it left, after local NAT (DNAT in the
	 * OUTPUT path): the socket's family and layout, like daddr. */
	__u8 nat_daddr[16];
	/* Sender of an ICMP error about the SYN: always 16 bytes, IPv4 as
	 * ::ffff:a.b.c.d. */
	__u8 icmp_from[16];
	/* The last SYN that passed the cgroup egress hook, so that a SYN
	 * dropped after it is not counted twice. Kernel-internal: zeroed
	 * before the record leaves. */
	__u64 syn_skb;
	/* The kernel's enum skb_drop_reason value of the last SYN dropped on
	 * this host (0: none). Its names differ between kernels: user space
	 * reads them from the kernel's BTF. */
	__u32 drop_reason;
	__u16 nat_dport; /* host order */
	/* SYNs the host sent or dropped: transmissions, 1 + retransmissions. */
	__u16 syn_sent;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 why;       /* WHY_* bits */
	__u8 _pad_why[5];
	/* Who (see "The process" below): the exec_id of the process's entry
	 * in map procs when the event was built, 0 when it had none. */
	__u64 exec_id;
};

/* Bits of event.why. */
enum why_flags {
	WHY_NAT = 1,     /* nat_daddr and nat_dport are set */
	WHY_ICMP = 2,    /* icmp_type, icmp_code and icmp_from are set */
	WHY_DROPPED = 4, /* drop_reason is set */
};

/* Key of the ICMP errors seen arriving (map icmp_errors): the SYN they
 * quote, as it was on the wire, and the network namespace it arrived in:
 * an error received in one namespace says nothing about an attempt made
 * in another (anyone can inject packets into a namespace of their own). */
struct why_icmp_key {
	__u8 daddr[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u16 sport;
	__u16 dport;
	__u32 netns_ino;
};

struct why_icmp {
	__u64 at_ns;
	__u8 from[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u32 seq;     /* the quoted segment's sequence number */
	__u8 type;
	__u8 code;
	__u8 _pad[2];
};

/* -d: a DNS message that a socket of the host sent to port 53 (a query)
 * or received from port 53 (an answer), over UDP or TCP. It shares the
 * ring buffer with struct event, so that an answer is always read before
 * the connect that follows it. User space believes an answer only when it
 * answers a query that the same socket sent to the same server, and
 * names only connects from the socket's network namespace and user. */
#define DNS_MAX 1024

struct dns_record {
	__u8 kind;         /* RECORD_DNS */
	__u8 tcp;          /* msg starts with TCP DNS's two-byte length */
	__u8 query;        /* 1: a query leaving; 0: an answer arriving */
	__u8 _pad0;
	__u32 len;         /* bytes of msg that are valid */
	__u64 sock_cookie; /* bpf_get_socket_cookie: which socket */
	__u8 addr[16];     /* the server: a query's destination, an answer's source */
	__u32 netns_ino;   /* the socket's network namespace, at its creation */
	__u32 uid;         /* who created the socket */
	__u16 port;        /* the server's port */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u32 _pad1;
	__u64 netns_cookie; /* that namespace's cookie (struct event) */
	__u8 msg[DNS_MAX];
};

/* -d: who made a socket, remembered in its local storage when it is
 * created (cgroup/sock_create), because the packets of a socket are not
 * always sent or received in its owner's context. */
struct sock_owner {
	__u32 netns_ino;
	__u32 uid;
	__u64 netns_cookie;
};

/* Key of the in-kernel counts of -c. */
struct count_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 dport;
	__u16 family;
	__u32 _pad;
};

/* --metrics-addr with --output none: outcomes are counted in the kernel
 * instead of sent. Key of the counts: dport is 0 unless the port is one
 * of --metrics-ports. */
struct outcome_key {
	__s32 err;
	__u16 family;
	__u16 dport;
	__u8 outcome;
	__u8 _pad[3];
	/* event.drop_reason when this host dropped a SYN of the attempt,
	 * else 0: a small fixed set (the kernel's enum skb_drop_reason). */
	__u32 drop_reason;
};

/* The handshake latency histogram of established attempts: a per-CPU
 * array of LATENCY_BUCKETS counts (attempts whose latency is at most the
 * bucket's bound, and above the previous one), then one for larger
 * latencies (+Inf), then the sum of latencies in ns. An enum, not
 * defines, so that Go gets the numbers from the object (bpf2go -type). */
enum latency_slot {
	LATENCY_BUCKETS = 16,
	LATENCY_INF = LATENCY_BUCKETS,
	LATENCY_SUM = LATENCY_BUCKETS + 1,
	LATENCY_SLOTS = LATENCY_BUCKETS + 2,
};

/* Indexes of the per-CPU stats array. */
enum stat_index {
	/* A record could not be reserved on the full ring buffer. */
	STAT_LOST_EVENTS = 0,
	/* An attempt could not be remembered (attempts map full): its
	 * outcome will not be reported. */
	STAT_LOST_ATTEMPTS = 1,
	/* A new (source, destination, port) could not be counted (-c). */
	STAT_LOST_COUNTS = 2,
	/* Wakeups of the reader that the programs forced. */
	STAT_WAKEUPS = 3,
	/* A DNS query or answer could not be reserved on the full ring
	 * buffer (-d): a name may be missing. */
	STAT_LOST_DNS = 4,
	/* A process could not be remembered (procs map full) or its record
	 * could not be reserved on the full ring buffer. */
	STAT_LOST_PROCS = 5,
	STAT_MAX = 6,
};

/* ---- The process: who made an attempt (exe, arguments, parent) ----
 *
 * Captured at exec in the kernel (map procs, keyed by the process's tgid)
 * and sent once per process and exec, as a struct proc_record on the ring
 * buffer just before the first record of an attempt that needs it; events
 * name it by (pid, exec_id). */

/* The executable's path, as the process's mount namespace and root see
 * it, is stored as its components from the leaf up, each ending in a NUL
 * (user space reverses them). A path is complete when it fits in
 * EXE_MAX - EXE_NAME_MAX bytes and PATH_DEPTH - 1 levels (directories and
 * mount crossings: enum limits); otherwise PROC_EXE_CUT is set and the components
 * nearest the root are missing. */
#define EXE_MAX 1024
#define EXE_NAME_MAX 256 /* NAME_MAX + its NUL */
/* Bytes of the command line kept (mm->arg_start .. arg_end, NUL
 * separated, as in /proc/PID/cmdline); args_len says how long it was. */
#define ARGS_MAX 2048

enum proc_flag {
	/* The executable is --exe. */
	PROC_EXE_MATCH = 1,
	/* The path was longer or deeper than the bounds above. */
	PROC_EXE_CUT = 2,
	/* Filled from /proc by user space at start, not seen at exec. */
	PROC_FROM_PROCFS = 4,
	/* The task had no executable (mm->exe_file NULL). */
	PROC_NO_EXE = 8,
	/* The command line could not be read at exec. */
	PROC_NO_ARGS = 16,
};

struct proc {
	/* Tells two execs of one PID apart (bpf_ktime_get_ns at exec; from
	 * /proc: a number with the top bit set). A forked child inherits
	 * its parent's. */
	__u64 exec_id;
	__u32 args_len;  /* the whole command line's length in bytes */
	__u16 exe_len;   /* valid bytes of exe */
	__u16 args_size; /* valid bytes of args */
	__u8 flags;      /* enum proc_flag */
	__u8 sent;       /* its proc_record is on the ring buffer */
	__u8 _pad[6];
	__u8 exe[EXE_MAX];
	__u8 args[ARGS_MAX];
};

/* RECORD_PROCESS: a record of its own on the ring buffer, kind byte
 * first like every record. */
struct proc_record {
	__u8 kind; /* RECORD_PROCESS */
	__u8 parent_flags; /* the parent's enum proc_flag; 0 when unknown */
	__u16 parent_exe_len; /* valid bytes of parent_exe; 0: unknown */
	__u32 pid;
	__u32 ppid;
	__u8 parent_comm[TASK_COMM_LEN]; /* as of the record */
	__u8 _pad[4];
	struct proc proc;
	__u8 parent_exe[EXE_MAX]; /* the parent's exe, in the same form */
};

#endif /* TCPCONNECT_H */
