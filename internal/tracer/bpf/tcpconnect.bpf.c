// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcpconnect: every active TCP connect attempt, and how it ended.
 *
 * An attempt is followed through three moments, each hooked per backend
 * (see doc.go for which hook each backend uses):
 *
 *   1. connect() is called on a TCP socket: remember the call per thread
 *      (map calls), so that a connect() that fails before any SYN is sent
 *      (no route, no free port, denied) is still reported when it returns
 *      (fexit / kretprobe on inet_stream_connect; on the sockops backend,
 *      only with --sync-errors, by syscalls:sys_exit_connect).
 *   2. The SYN is about to leave (tcp_connect, or sockops
 *      TCP_CONNECT_CB): the source port is chosen and we run in the
 *      connecting task. The attempt is emitted here, or remembered per
 *      socket (map attempts) when outcomes are wanted.
 *   3. The outcome: sock:inet_sock_set_state leaving SYN_SENT, or
 *      connect()'s own error when the kernel keeps an ICMP error as a soft
 *      error and the socket stays in SYN_SENT (tcp_v4_err while the socket
 *      is owned by the user).
 *
 * No syscall tracepoint by default: attaching any program to one sets
 * TIF_SYSCALL_TRACEPOINT on every task of the host, which then takes the
 * slow syscall entry and exit path for every syscall (getppid() ~+35 %).
 *
 * Filters are const volatile globals set before load, so an unwanted
 * attempt costs no ring-buffer record.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tcpconnect.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10
#define EINTR 4
#define EAGAIN 11
#define EINPROGRESS 115
#define EALREADY 114
#define EADDRNOTAVAIL 99
/* Kernel-internal restart codes that a syscall exit tracepoint can see
 * before signal delivery rewrites them (include/linux/errno.h). */
#define ERESTARTSYS 512
#define ERESTART_RESTARTBLOCK 516

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Filters and modes, set by user space before load. Zero means "off". */
const volatile __u32 filter_pid = 0;
const volatile __u32 filter_uid = 0;
const volatile bool filter_by_uid = false;
const volatile __u16 filter_family = 0;
const volatile bool filter_by_port = false;
/* Filters on the task's context (--netns, --cgroup/--container,
 * --cgroupmap, --mntnsmap): applied where the event is built. */
const volatile __u32 filter_netns = 0;
/* The host's network namespace (its inode): where packets arrive on the
 * host's own devices. */
const volatile __u32 host_netns_ino = 0;
const volatile bool filter_by_cgroup = false;
const volatile bool filter_by_cgroupmap = false;
const volatile bool filter_by_mntnsmap = false;
/* Remember attempts and report their outcome instead of the attempt. */
const volatile bool track_outcomes = false;
/* Count outcomes in the kernel for the metrics instead of emitting
 * records (--metrics-addr with --output none). */
const volatile bool metrics_in_kernel = false;
/* The histogram's bucket bounds in ns, ascending (user space sets them
 * to the Prometheus histogram's). */
const volatile __u64 latency_bounds_ns[LATENCY_BUCKETS] = {};
/* Count attempts in the kernel (-c) instead of emitting records. */
const volatile bool count_mode = false;
/* connect()'s return value is hooked (fexit or kretprobe on
 * inet_stream_connect, or syscalls:sys_exit_connect with --sync-errors):
 * it reports failures before the SYN and needs the calls entry until
 * then. Without it (sockops), what the cheap hooks can tell is reported
 * instead: see sockops_sync_failure. Set per backend by user space. */
const volatile bool exit_hooked = false;
/* bpf_get_retval() works in cgroup/connect4|6 (5.18+). */
const volatile bool have_get_retval = false;
/* Outcome mode only: report only failed attempts / slow attempts. */
const volatile bool only_failed = false;
const volatile __u64 min_latency_ns = 0;
/* A record wakes the reader only when the last wakeup is older than
 * this; later records ride along and are read on the reader's short
 * fallback timer. Bounds wakeups under load (costly IPIs and irq_work in
 * a VM) while an isolated event still shows up at once. */
const volatile __u64 wakeup_gap_ns = 0; /* tracer.Config.WakeupGap */

/* The process filters: --exe (the path in the encoding of struct proc's
 * exe, zero padded; matched once per exec, see PROC_EXE_MATCH) and --comm
 * (the thread's name, all 16 bytes, as Inspektor Gadget's targ_comm). */
const volatile bool filter_by_exe = false;
const volatile __u16 filter_exe_len = 0;
const volatile __u64 filter_exe[EXE_MAX / 8] = {};
const volatile bool filter_by_comm = false;
const volatile char filter_comm[TASK_COMM_LEN] = {};

/* Written without a lock: a lost race only costs one extra or one
 * missing forced wakeup, which the reader's timer covers. */
__u64 last_wakeup_ns = 0;

/* Entries of map attempts: the packet hooks of "why" return at once
 * while it is 0, so a host with no connect in flight pays one load per
 * packet. Changed only by remember() and finish(), atomically. */
__u64 pending_attempts = 0;

/* Forces the types and enums of tcpconnect.h that no map or program
 * names into BTF, for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const struct count_key *unused_count_key __attribute__((unused));
const struct dns_record *unused_dns_record __attribute__((unused));
const struct outcome_key *unused_outcome_key __attribute__((unused));
const struct proc_record *unused_proc_record __attribute__((unused));
const enum proc_flag *unused_proc_flag __attribute__((unused));
const enum record_kind *unused_record_kind __attribute__((unused));
const enum outcome *unused_outcome __attribute__((unused));
const enum stat_index *unused_stat_index __attribute__((unused));
const enum latency_slot *unused_latency_slot __attribute__((unused));
const enum why_flags *unused_why_flags __attribute__((unused));
const enum limits *unused_limits __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* A placeholder: user space sets the size before load
	 * (tracer.Config.BufferSize, --buffer-size). */
	__uint(max_entries, 4096);
} events SEC(".maps");

/* Counters that user space polls: lost records, lost attempts, wakeups. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Destination ports of -P. Filled by user space before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

/* Outcome counts and latency histogram for the metrics (metrics_in_kernel),
 * read by user space at each scrape; entries are never deleted (the key
 * space is small: families x outcomes x errnos x listed ports). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct outcome_key);
	__type(value, __u64);
} outcome_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LATENCY_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} latency_hist SEC(".maps");

/* --metrics-ports: destination ports counted on their own. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} metrics_ports SEC(".maps");

/* --cgroup and --container: cgroup ids; an attempt is wanted when its
 * task's cgroup or one of that cgroup's ancestors is here. Filled by user
 * space before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_filter SEC(".maps");

/* bcc's --cgroupmap and --mntnsmap: user space replaces these with the
 * maps pinned by the user (the task's exact cgroup id / mount namespace
 * inode must be a key), so their contents can change while we run. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} cgroupmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} mntnsmap SEC(".maps");

/* A connect() call in progress on a TCP socket.
 * Inserted when connect() enters the TCP code (backend hook; the thread's
 * next connect() overwrites or deletes a stale one), updated at
 * CLOSE -> SYN_SENT and at the SYN, deleted when connect() returns (exit
 * hook) or, without one, at the SYN or at the failure the sockops backend
 * sees. LRU because a call whose return is never seen (TCP Fast Open
 * through sendmsg on sockops; a failure before CLOSE -> SYN_SENT without
 * an exit hook; a missed kretprobe) would otherwise stay. */
struct call {
	__u64 start_ns;
	__u64 sk;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 syn_sent;
	__u8 state_set; /* CLOSE -> SYN_SENT seen */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct call);
} calls SEC(".maps");

/* Attempts whose SYN left and whose outcome is not known yet, keyed by
 * the socket's address. Inserted at the SYN (outcome mode only), deleted
 * when the outcome is emitted. Every SYN_SENT socket leaves that state,
 * so entries do not leak; what is left at exit is printed as pending. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* A placeholder: user space sets the size before load
	 * (tracer.Config.MaxPending, --max-pending). */
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct event);
} attempts SEC(".maps");

/* -c: attempts per (source, destination, port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct count_key);
	__type(value, __u64);
} counts SEC(".maps");

/* The process behind each tgid: its exe and command line as of its last
 * exec. Inserted at exec (tcpconnect_exec) and at fork (a copy of the
 * parent's, tcpconnect_fork), and by user space from /proc at start;
 * deleted when the process's last thread exits (tcpconnect_exit). So the
 * map holds live processes only, and a reused PID never meets a dead
 * process's entry: every process is born by fork, which overwrites or
 * deletes its key. Not preallocated (an entry is 3 KiB, and most PIDs are
 * unused); an LRU would need preallocation and would evict long-lived
 * daemons under an exec storm. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct proc);
} procs SEC(".maps");

/* Where tcpconnect_exec builds an entry: too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc);
} proc_scratch SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

/* Filters known before the SYN: process, user, family, destination port. */
/* Adds one to the counter at key, inserting it first if it is new (the
 * shape of libbpf-tools' bpf_map_lookup_or_try_init). Returns false when
 * the map is full. Another CPU may insert the same key between our
 * lookup and our insert: BPF_NOEXIST then fails, and the second lookup
 * finds its entry. */
static __always_inline bool counter_inc(void *map, const void *key)
{
	__u64 zero = 0, *n;

	n = bpf_map_lookup_elem(map, key);
	if (!n) {
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(map, key);
		if (!n)
			return false;
	}
	__sync_fetch_and_add(n, 1);
	return true;
}

static __always_inline bool wanted(__u32 pid, __u32 uid, __u16 family, __u16 dport)
{
	if (filter_pid && pid != filter_pid)
		return false;
	if (filter_by_uid && uid != filter_uid)
		return false;
	if (filter_family && family != filter_family)
		return false;
	if (filter_by_port && !bpf_map_lookup_elem(&ports, &dport))
		return false;
	return true;
}

static __always_inline __u64 wakeup_flags(void)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - last_wakeup_ns < wakeup_gap_ns)
		return BPF_RB_NO_WAKEUP;
	last_wakeup_ns = now;
	stat_inc(STAT_WAKEUPS);
	return BPF_RB_FORCE_WAKEUP;
}

static __always_inline void emit(const struct event *e)
{
	struct event *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);

	if (!rec) {
		stat_inc(STAT_LOST_EVENTS);
		return;
	}
	__builtin_memcpy(rec, e, sizeof(*rec));
	bpf_ringbuf_submit(rec, wakeup_flags());
}

static __always_inline void count(const struct event *e)
{
	struct count_key key = {};

	__builtin_memcpy(key.saddr, e->saddr, sizeof(key.saddr));
	__builtin_memcpy(key.daddr, e->daddr, sizeof(key.daddr));
	key.dport = e->dport;
	key.family = e->family;
	if (!counter_inc(&counts, &key))
		stat_inc(STAT_LOST_COUNTS);
}

#define MAX_CGROUP_DEPTH 16
#define MAX_PIDNS_DEPTH 8

/* The process's PID in its own PID namespace. numbers[] is a flexible
 * array: the verifier takes only constant offsets into it, hence the
 * unrolled loop. */
static __always_inline __u32 pid_in_own_ns(struct task_struct *task)
{
	struct pid *pid = task->group_leader->thread_pid;
	unsigned int level = pid->level;
	__u32 nr = 0;

#pragma unroll
	for (int i = 0; i < MAX_PIDNS_DEPTH; i++)
		if (i == level)
			nr = pid->numbers[i].nr;
	return nr;
}

/* Who: everything about the current task, through its BTF so that the
 * same code serves every program type (6.1 refuses pid_tgid and comm
 * helpers in sockops; task BTF works everywhere). */
static __always_inline void fill_task(struct event *e)
{
	struct task_struct *task = bpf_get_current_task_btf();

	e->pid = task->tgid;
	e->tid = task->pid;
	e->uid = task->cred->uid.val;
	__builtin_memcpy(e->comm, task->comm, sizeof(e->comm));
	e->ppid = task->real_parent->tgid;
	e->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	e->netns_ino = task->nsproxy->net_ns->ns.inum;
	e->netns_cookie = task->nsproxy->net_ns->net_cookie;
	e->mntns_ino = task->nsproxy->mnt_ns->ns.inum;
	e->pid_ns_pid = pid_in_own_ns(task);
	e->exec_id = 0;
	{
		__u32 tgid = e->pid;
		struct proc *p = bpf_map_lookup_elem(&procs, &tgid);

		if (p)
			e->exec_id = p->exec_id;
	}
}

/* The task's cgroup, or an ancestor of it, is in cgroup_filter. Walks up
 * through each cgroup's css parent: cgroup->ancestors[] would be shorter,
 * but the verifier refuses loads from that flexible array. */
static __always_inline bool in_cgroup_filter(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cgroup *cgrp = task->cgroups->dfl_cgrp;

#pragma unroll
	for (int i = 0; i < MAX_CGROUP_DEPTH; i++) {
		struct cgroup_subsys_state *parent;
		__u64 id;

		if (!cgrp)
			break;
		id = cgrp->kn->id;
		if (bpf_map_lookup_elem(&cgroup_filter, &id))
			return true;
		parent = cgrp->self.parent;
		if (!parent)
			break;
		cgrp = parent->cgroup;
	}
	return false;
}

/* Filters on the task's context; e was filled by fill_task. */
static __always_inline bool task_wanted(const struct event *e)
{
	if (filter_netns && e->netns_ino != filter_netns)
		return false;
	if (filter_by_cgroupmap && !bpf_map_lookup_elem(&cgroupmap, &e->cgroup_id))
		return false;
	if (filter_by_mntnsmap) {
		__u64 ino = e->mntns_ino;

		if (!bpf_map_lookup_elem(&mntnsmap, &ino))
			return false;
	}
	if (filter_by_cgroup && !in_cgroup_filter())
		return false;
	if (filter_by_comm) {
		for (int i = 0; i < TASK_COMM_LEN; i++)
			if (e->comm[i] != filter_comm[i])
				return false;
	}
	if (filter_by_exe) {
		__u32 tgid = e->pid;
		struct proc *p = bpf_map_lookup_elem(&procs, &tgid);

		if (!p || !(p->flags & PROC_EXE_MATCH))
			return false;
	}
	return true;
}

/* Sends the process of the attempt e (filled by fill_task) once per
 * process and exec, ahead of the attempt's own record, so that user space
 * knows it even when the process is gone by the time the attempt's record
 * is read. Two threads racing here may both send it: harmless. */
static __always_inline void send_proc(const struct event *e)
{
	__u32 tgid = e->pid, ppid = e->ppid;
	struct proc *p = bpf_map_lookup_elem(&procs, &tgid), *pp;
	struct task_struct *task;
	struct proc_record *rec;

	if (!p || p->sent)
		return;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		stat_inc(STAT_LOST_PROCS);
		return;
	}
	rec->kind = RECORD_PROCESS;
	rec->pid = tgid;
	rec->ppid = ppid;
	task = bpf_get_current_task_btf();
	__builtin_memcpy(rec->parent_comm, task->real_parent->comm, sizeof(rec->parent_comm));
	/* A helper copies the 3 KiB: an inline copy would be hundreds of
	 * instructions at every call site. */
	if (bpf_probe_read_kernel(&rec->proc, sizeof(rec->proc), p)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return;
	}
	rec->parent_flags = 0;
	rec->parent_exe_len = 0;
	pp = bpf_map_lookup_elem(&procs, &ppid);
	if (pp && !bpf_probe_read_kernel(rec->parent_exe, sizeof(rec->parent_exe), pp->exe)) {
		rec->parent_flags = pp->flags;
		rec->parent_exe_len = pp->exe_len;
	}
	/* The attempt's record follows at once and decides the wakeup. */
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	p->sent = 1;
}

/* Moment 1: connect() entered the TCP code. The caller has filled
 * family, daddr and dport; we run in the connecting task. */
static __always_inline void call_start(struct call *c)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();

	if (!wanted(id >> 32, uid, c->family, c->dport))
		return;
	c->start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&calls, &id, c, BPF_ANY);
}

/* Puts the attempt in map attempts, counting new entries in
 * pending_attempts. */
static __always_inline void remember(__u64 sk, const struct event *e)
{
	if (!bpf_map_update_elem(&attempts, &sk, e, BPF_NOEXIST)) {
		__sync_fetch_and_add(&pending_attempts, 1);
		return;
	}
	/* The socket's earlier attempt is still there (a connect() again
	 * after a soft error), or the map is full. */
	if (bpf_map_update_elem(&attempts, &sk, e, BPF_EXIST))
		stat_inc(STAT_LOST_ATTEMPTS);
}

/* Moment 2: the SYN is about to leave. The caller has filled the task
 * and address fields of e; sk identifies the socket. */
static __always_inline void syn_sent(__u64 sk, struct event *e)
{
	__u64 id = ((__u64)e->pid << 32) | e->tid;
	struct call *c;

	if (!wanted(e->pid, e->uid, e->family, e->dport) || !task_wanted(e))
		return;
	c = bpf_map_lookup_elem(&calls, &id);
	if (c) {
		c->syn_sent = 1;
		c->sk = sk;
	}
	e->start_ns = bpf_ktime_get_ns();
	e->kind = RECORD_ATTEMPT;
	if (!count_mode && !metrics_in_kernel)
		send_proc(e);
	if (count_mode) {
		count(e);
		return;
	}
	if (track_outcomes) {
		remember(sk, e);
		return;
	}
	emit(e);
}

/* Counts one ended attempt for the metrics, in the kernel. */
static __always_inline void count_outcome(const struct event *e, __u8 outcome, __s32 err, __u64 lat)
{
	struct outcome_key key = {};

	key.err = err;
	key.family = e->family;
	key.outcome = outcome;
	if (e->why & WHY_DROPPED)
		key.drop_reason = e->drop_reason;
	if (bpf_map_lookup_elem(&metrics_ports, &e->dport))
		key.dport = e->dport;
	if (!counter_inc(&outcome_counts, &key))
		stat_inc(STAT_LOST_COUNTS);

	if (outcome == OUTCOME_ESTABLISHED) {
		__u32 idx = LATENCY_INF, sum = LATENCY_SUM;
		__u64 *v;

		for (int i = 0; i < LATENCY_BUCKETS; i++) {
			if (lat <= latency_bounds_ns[i]) {
				idx = i;
				break;
			}
		}
		v = bpf_map_lookup_elem(&latency_hist, &idx);
		if (v)
			*v += 1;
		v = bpf_map_lookup_elem(&latency_hist, &sum);
		if (v)
			*v += lat;
	}
}

/* ---- why (outcome mode): ICMP errors seen arriving ----
 * Inserted by tcpconnect_icmp for every ICMP error that quotes a TCP
 * packet, looked up and deleted when the attempt it quotes ends. LRU: an
 * error about a packet that is not an attempt we follow is never looked
 * up, and ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct why_icmp_key);
	__type(value, struct why_icmp);
} icmp_errors SEC(".maps");

/* An IPv4 address as ::ffff:a.b.c.d. */
static __always_inline void map4(__u8 dst[16], __u32 a4)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a4, 4);
}

/* Before a's outcome leaves: attach the ICMP error that answered its SYN
 * (socket sk), if one arrived since the attempt started. The error quotes
 * the SYN as it was on the wire, so after NAT. It counts only as the
 * kernel counts it (tcp_v4_err, tcp_v6_err): received in the socket's
 * network namespace, quoting a sequence number the socket has sent
 * (snd_una..snd_nxt, the SYN's). An error with a guessed tuple but not
 * the SYN's sequence number changes nothing in the kernel, so it must
 * not change what we print either. */
static __always_inline void why_finish(__u64 sk, struct event *a, __u8 outcome)
{
	struct why_icmp_key k = {};
	struct why_icmp *ie;
	const __u8 *dst = a->daddr;
	__u16 dport = a->dport;
	__u32 una, nxt;

	a->syn_skb = 0;
	if (outcome == OUTCOME_ESTABLISHED || outcome == OUTCOME_SYNC_FAILED)
		return;
	if (a->why & WHY_NAT) {
		dst = a->nat_daddr;
		dport = a->nat_dport;
	}
	if (a->family == AF_INET) {
		__u32 a4;

		__builtin_memcpy(&a4, dst, 4);
		map4(k.daddr, a4);
	} else {
		__builtin_memcpy(k.daddr, dst, 16);
	}
	k.sport = a->sport;
	k.dport = dport;
	k.netns_ino = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_net.net, ns.inum);
	ie = bpf_map_lookup_elem(&icmp_errors, &k);
	if (!ie && host_netns_ino && k.netns_ino != host_netns_ino) {
		/* A macvlan or ipvlan device hands the packet to the socket's
		 * namespace after the receive tracepoint ran in the host's,
		 * on the host's device. Only root can put packets there. */
		k.netns_ino = host_netns_ino;
		ie = bpf_map_lookup_elem(&icmp_errors, &k);
	}
	if (!ie)
		return;
	una = BPF_CORE_READ((struct tcp_sock *)sk, snd_una);
	nxt = BPF_CORE_READ((struct tcp_sock *)sk, snd_nxt);
	if (ie->at_ns >= a->start_ns && ie->seq - una <= nxt - una) {
		__builtin_memcpy(a->icmp_from, ie->from, 16);
		a->icmp_type = ie->type;
		a->icmp_code = ie->code;
		a->why |= WHY_ICMP;
	}
	bpf_map_delete_elem(&icmp_errors, &k);
}

/* Moment 3: the attempt a (from map attempts, key sk) ended. */
static __always_inline void finish(__u64 sk, struct event *a, __u8 outcome, __s32 err)
{
	struct event e;
	__u64 lat;
	bool report = true;

	/* Two hooks can race to finish one attempt (the state change in
	 * softirq on one CPU, connect()'s return on another): only the one
	 * whose deletion removes the entry reports it. The entry is copied
	 * first, since a deleted element can be reused at once. */
	__builtin_memcpy(&e, a, sizeof(e));
	if (bpf_map_delete_elem(&attempts, &sk))
		return;
	__sync_fetch_and_sub(&pending_attempts, 1);
	lat = bpf_ktime_get_ns() - e.start_ns;
	if (only_failed && outcome == OUTCOME_ESTABLISHED)
		report = false;
	if (lat < min_latency_ns)
		report = false;
	if (!report)
		return;
	why_finish(sk, &e, outcome);
	if (metrics_in_kernel) {
		count_outcome(&e, outcome, err, lat);
		return;
	}
	e.kind = RECORD_OUTCOME;
	e.outcome = outcome;
	e.err = err;
	e.latency_ns = lat;
	emit(&e);
}

/* connect() failed before any SYN left: report it now. c is the call
 * (addresses from the connect hook and CLOSE -> SYN_SENT). */
static __always_inline void sync_failed(const struct call *c, int err)
{
	struct event e = {};

	e.start_ns = c->start_ns;
	e.latency_ns = bpf_ktime_get_ns() - c->start_ns;
	__builtin_memcpy(e.saddr, c->saddr, sizeof(e.saddr));
	__builtin_memcpy(e.daddr, c->daddr, sizeof(e.daddr));
	e.sport = c->sport;
	e.dport = c->dport;
	e.family = c->family;
	fill_task(&e);
	if (!task_wanted(&e))
		return;
	e.kind = RECORD_OUTCOME;
	e.outcome = OUTCOME_SYNC_FAILED;
	e.err = err;
	if (count_mode)
		count(&e);
	else if (min_latency_ns && e.latency_ns < min_latency_ns)
		;
	else if (metrics_in_kernel)
		count_outcome(&e, OUTCOME_SYNC_FAILED, err, e.latency_ns);
	else {
		send_proc(&e);
		emit(&e);
	}
}

/* Without an exit hook (sockops backend): is this SYN_SENT -> CLOSE a
 * connect() failing before its SYN? tcp_v{4,6}_connect set SYN_SENT, then
 * inet_hash_connect found no free port (or, rarely, ip_route_newports
 * failed) and went to its failure label. We run in the connecting task:
 * its call has seen CLOSE -> SYN_SENT on this socket and no SYN, and
 * __inet_stream_connect has not yet marked the socket SS_CONNECTING (a
 * socket whose connect() returned, e.g. TCP_FASTOPEN_CONNECT deferring
 * its SYN to the first write, is closed as SS_CONNECTING). The errno is
 * not seen here: it is inet_hash_connect's, EADDRNOTAVAIL. */
static __always_inline bool sockops_sync_failure(__u64 sk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	struct socket *sock;

	if (!c || c->sk != sk || !c->state_set || c->syn_sent)
		return false;
	sock = BPF_CORE_READ((struct sock *)sk, sk_socket);
	if (!sock || BPF_CORE_READ(sock, state) != SS_UNCONNECTED)
		return false;
	sync_failed(c, EADDRNOTAVAIL);
	bpf_map_delete_elem(&calls, &id);
	return true;
}

/* ---- shared hooks: all backends ---- */

SEC("tracepoint/sock/inet_sock_set_state")
int tcpconnect_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
	__u64 sk = (__u64)ctx->skaddr;
	struct event *a;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* Inside tcp_v{4,6}_connect, in the task: the route gave the
		 * source address, the port is not picked yet (that comes after
		 * the state change, in inet_hash_connect). Keep the address for
		 * a connect() that fails before the SYN (no free port). */
		__u64 id = bpf_get_current_pid_tgid();
		struct call *c = bpf_map_lookup_elem(&calls, &id);

		if (!c)
			return 0;
		c->sk = sk;
		c->state_set = 1;
		/* A helper, not a copy: the verifier refuses loads through a
		 * tracepoint ctx pointer that was offset. */
		if (ctx->family == AF_INET)
			bpf_probe_read_kernel(c->saddr, 4, ctx->saddr);
		else
			bpf_probe_read_kernel(c->saddr, 16, ctx->saddr_v6);
		c->sport = ctx->sport;
		return 0;
	}

	if (!exit_hooked && oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE &&
	    sockops_sync_failure(sk))
		return 0;
	if (!track_outcomes || oldstate != TCP_SYN_SENT)
		return 0;
	a = bpf_map_lookup_elem(&attempts, &sk);
	if (!a)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		finish(sk, a, OUTCOME_ESTABLISHED, 0);
	} else if (newstate == TCP_CLOSE) {
		/* tcp_reset (RST: ECONNREFUSED), tcp_write_err (ETIMEDOUT, or
		 * the soft ICMP error) and tcp_v4_err set sk_err before
		 * tcp_done(); a close by the application leaves it 0. */
		int err = BPF_CORE_READ((struct sock *)sk, sk_err);

		finish(sk, a, err ? OUTCOME_FAILED : OUTCOME_CLOSED, err);
	}
	return 0;
}

static __always_inline bool still_connecting(int err)
{
	/* connect() gave up waiting but the handshake goes on. */
	return err == EINPROGRESS || err == EALREADY || err == EINTR || err == EAGAIN ||
	       (err >= ERESTARTSYS && err <= ERESTART_RESTARTBLOCK);
}

/* connect() of the current thread returned ret: the kernel's value at
 * inet_stream_connect's return (may be -ERESTARTSYS, rewritten later by
 * signal delivery) or the syscall's. */
static __always_inline void connect_returned(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	int err = -(int)ret;

	if (!c)
		return;
	if (ret == 0 || still_connecting(err))
		goto out;

	if (c->syn_sent) {
		/* The SYN left. If the attempt is still open, connect() learned
		 * its fate from a soft error (ICMP unreachable kept while the
		 * socket was owned by the user): the socket stays in SYN_SENT
		 * until closed, and then closes with no sk_err. */
		__u64 sk = c->sk;
		struct event *a;

		if (track_outcomes) {
			a = bpf_map_lookup_elem(&attempts, &sk);
			if (a)
				finish(sk, a, OUTCOME_FAILED, err);
		}
		goto out;
	}
	sync_failed(c, err);
out:
	bpf_map_delete_elem(&calls, &id);
}

/* ---- --sync-errors on the sockops backend: syscall tracepoints ---- */

/* The format of syscalls:sys_exit_connect (stable ABI of the tracepoint). */
struct sys_exit_ctx {
	__u64 common;
	int nr;
	long ret;
};

SEC("tracepoint/syscalls/sys_enter_connect")
int tcpconnect_connect_enter(void *ctx)
{
	/* Forget a call left by a path that never reached sys_exit_connect
	 * (TCP Fast Open runs the connect hooks from sendmsg). */
	__u64 id = bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&calls, &id);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tcpconnect_connect_exit(struct sys_exit_ctx *ctx)
{
	connect_returned(ctx->ret);
	return 0;
}

/* ---- backend "sockops": cgroup connect hooks + sockops (no kprobes) ---- */

static __always_inline int sock_addr_call(struct bpf_sock_addr *ctx, __u16 family)
{
	struct call c = {};
	__u64 id;

	/* An address of the other family fails with EAFNOSUPPORT right
	 * after this hook (tcp_v{4,6}_connect): not an attempt. */
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP || ctx->user_family != family) {
		/* A UDP connect() of this thread must not meet a stale TCP call. */
		id = bpf_get_current_pid_tgid();
		bpf_map_delete_elem(&calls, &id);
		return 1;
	}
	c.family = family;
	c.dport = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__u32 a4 = ctx->user_ip4;

		__builtin_memcpy(c.daddr, &a4, 4);
	} else {
		__u32 a6[4];

		a6[0] = ctx->user_ip6[0];
		a6[1] = ctx->user_ip6[1];
		a6[2] = ctx->user_ip6[2];
		a6[3] = ctx->user_ip6[3];
		__builtin_memcpy(c.daddr, a6, 16);
	}
	if (have_get_retval && !exit_hooked) {
		/* A cgroup connect program that ran before this one (programs of
		 * descendant cgroups run first) denied the connect: it fails
		 * with this errno (EPERM, or the program's bpf_set_retval) and
		 * no SYN. A program that runs after this one is not seen. */
		int ret = bpf_get_retval();

		if (ret < 0) {
			__u64 id = bpf_get_current_pid_tgid();
			__u32 uid = (__u32)bpf_get_current_uid_gid();

			if (wanted(id >> 32, uid, c.family, c.dport)) {
				c.start_ns = bpf_ktime_get_ns();
				sync_failed(&c, -ret);
			}
			id = bpf_get_current_pid_tgid();
			bpf_map_delete_elem(&calls, &id);
			return 1;
		}
	}
	call_start(&c);
	return 1; /* never deny: we only watch */
}

SEC("cgroup/connect4")
int tcpconnect_connect4(struct bpf_sock_addr *ctx)
{
	return sock_addr_call(ctx, AF_INET);
}

SEC("cgroup/connect6")
int tcpconnect_connect6(struct bpf_sock_addr *ctx)
{
	return sock_addr_call(ctx, AF_INET6);
}

SEC("sockops")
int tcpconnect_sockops(struct bpf_sock_ops *ctx)
{
	struct event e = {};
	__u64 sk;

	if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	sk = (__u64)ctx->sk;
	if (!sk)
		return 1;

	/* TCP_CONNECT_CB runs in the connecting task (tcp_connect from
	 * connect() or sendmsg). */
	fill_task(&e);

	e.family = ctx->family;
	if (e.family == AF_INET) {
		__u32 s4 = ctx->local_ip4, d4 = ctx->remote_ip4;

		__builtin_memcpy(e.saddr, &s4, 4);
		__builtin_memcpy(e.daddr, &d4, 4);
	} else {
		__u32 s6[4], d6[4];

		s6[0] = ctx->local_ip6[0];
		s6[1] = ctx->local_ip6[1];
		s6[2] = ctx->local_ip6[2];
		s6[3] = ctx->local_ip6[3];
		d6[0] = ctx->remote_ip6[0];
		d6[1] = ctx->remote_ip6[1];
		d6[2] = ctx->remote_ip6[2];
		d6[3] = ctx->remote_ip6[3];
		__builtin_memcpy(e.saddr, s6, 16);
		__builtin_memcpy(e.daddr, d6, 16);
	}
	/* local_port is in host order; remote_port is the network-order
	 * port in the upper 16 bits (sock_ops_convert_ctx_access). */
	e.sport = (__u16)ctx->local_port;
	e.dport = (__u16)bpf_ntohl(ctx->remote_port);
	syn_sent(sk, &e);
	if (!exit_hooked) {
		/* No exit hook will need the call (see calls). */
		__u64 id = ((__u64)e.pid << 32) | e.tid;

		bpf_map_delete_elem(&calls, &id);
	}
	return 1;
}

/* ---- backends "fentry" and "kprobe": the TCP functions themselves ---- */

/* inet_stream_connect entered. Every entry replaces the thread's call:
 * one left from an earlier call whose return was not seen (a missed
 * kretprobe) must not meet this call's return. */
static __always_inline void stream_connect(struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	struct call c = {};
	__u16 family;
	__u64 id;

	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_CLOSE)
		goto forget;
	/* A socket whose attempt is under way or has just ended but not been
	 * collected (SS_CONNECTING): connect() called again to learn the
	 * result of a non-blocking one, or restarted after a signal, once
	 * the answer has closed the socket. It returns that attempt's error
	 * (sock_error): the attempt was reported when it ended; this is no
	 * new one. */
	if (BPF_CORE_READ(sock, state) != SS_UNCONNECTED)
		goto forget;
	/* uaddr is the kernel's copy of the caller's address, on its
	 * stack: only addr_len bytes of it are the caller's, the rest is
	 * whatever the stack held. An address too short for its family
	 * fails with EINVAL before any attempt (tcp_v4_connect,
	 * tcp_v6_connect): not an attempt, and its bytes must not be
	 * printed as one. SIN6_LEN_RFC2133 (24) is the shortest IPv6
	 * address the kernel takes; it holds sin6_addr. */
	if (addr_len < (int)sizeof(struct sockaddr_in))
		goto forget;
	family = BPF_CORE_READ(uaddr, sa_family);
	if (family == AF_INET6 && addr_len < 24)
		goto forget;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)uaddr;

		bpf_probe_read_kernel(c.daddr, 4, &in->sin_addr);
		c.dport = bpf_ntohs(BPF_CORE_READ(in, sin_port));
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)uaddr;

		bpf_probe_read_kernel(c.daddr, 16, &in6->sin6_addr);
		c.dport = bpf_ntohs(BPF_CORE_READ(in6, sin6_port));
	} else {
		goto forget;
	}
	/* The attempt belongs to the socket's family: an IPv6 socket
	 * dialling ::ffff:a.b.c.d is IPv6 to the tool, as to ss. */
	c.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (c.family != family)
		goto forget; /* EAFNOSUPPORT in tcp_v{4,6}_connect: not an attempt */
	call_start(&c);
	return;
forget:
	id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&calls, &id);
}

static __always_inline void tcp_connect_sk(struct sock *sk)
{
	struct event e = {};

	fill_task(&e);
	e.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (e.family == AF_INET) {
		/* Through a __u32: BPF_CORE_READ_INTO(&e.saddr, ...) would copy
		 * sizeof(e.saddr), 16 bytes, from a 4-byte field, and the bytes
		 * after it would differ between attempts (split -c rows). */
		__u32 s4 = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(e.saddr, &s4, 4);
		__builtin_memcpy(e.daddr, &d4, 4);
	} else {
		BPF_CORE_READ_INTO(&e.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e.daddr, sk, __sk_common.skc_v6_daddr);
	}
	e.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	syn_sent((__u64)sk, &e);
}

SEC("fentry/inet_stream_connect")
int BPF_PROG(tcpconnect_fentry_stream_connect, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	stream_connect(sock, uaddr, addr_len);
	return 0;
}

/* inet_stream_connect is what connect(2) calls, and io_uring's connect
 * too (__sys_connect_file -> sock->ops->connect), so its return value is
 * connect()'s result on both. */
SEC("fexit/inet_stream_connect")
int BPF_PROG(tcpconnect_fexit_stream_connect, struct socket *sock, struct sockaddr *uaddr,
	     int addr_len, int flags, int ret)
{
	connect_returned(ret);
	return 0;
}

SEC("fentry/tcp_connect")
int BPF_PROG(tcpconnect_fentry_tcp_connect, struct sock *sk)
{
	tcp_connect_sk(sk);
	return 0;
}

SEC("kprobe/inet_stream_connect")
int BPF_KPROBE(tcpconnect_kprobe_stream_connect, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	stream_connect(sock, uaddr, addr_len);
	return 0;
}

/* Arguments are not available at return: the call was remembered per
 * thread at entry. */
SEC("kretprobe/inet_stream_connect")
int BPF_KRETPROBE(tcpconnect_kretprobe_stream_connect, int ret)
{
	connect_returned(ret);
	return 0;
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(tcpconnect_kprobe_tcp_connect, struct sock *sk)
{
	tcp_connect_sk(sk);
	return 0;
}

/* ---- -d: DNS queries and answers, on every backend ---- */

/* Who created each socket (struct sock_owner). Inserted by
 * tcpconnect_dns_sock when an inet socket is created; the kernel frees
 * the entry with its socket. Sockets made before we attached have none,
 * and their DNS traffic is ignored: a name is only believed when we saw
 * who asked for it. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_owner);
} sock_owners SEC(".maps");

/* cgroup/sock_create on the cgroup v2 root runs in the creating task for
 * every socket of the host: a socket lives in the network namespace of
 * the task that creates it (sock_create uses current->nsproxy->net_ns). */
SEC("cgroup/sock_create")
int tcpconnect_dns_sock(struct bpf_sock *sk)
{
	struct task_struct *task;
	struct sock_owner *o;

	if (sk->family != AF_INET && sk->family != AF_INET6)
		return 1;
	if (sk->protocol != IPPROTO_UDP && sk->protocol != IPPROTO_TCP)
		return 1;
	o = bpf_sk_storage_get(&sock_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return 1;
	task = bpf_get_current_task_btf();
	o->netns_ino = task->nsproxy->net_ns->ns.inum;
	o->netns_cookie = task->nsproxy->net_ns->net_cookie;
	o->uid = (__u32)bpf_get_current_uid_gid();
	return 1;
}

/* dns_packet sends a DNS message of skb to user space: a query (to port
 * 53) when query is set, else an answer (from port 53). cgroup_skb sees
 * every packet that a socket of the host sends or receives, in any
 * network namespace, with the packet starting at its IP header; no
 * kprobe on receive internals (what broke bcc's -d). Messages go on the
 * ring buffer without a wakeup: the connect that follows wakes the
 * reader. Always lets the packet through. */
static __always_inline int dns_packet(struct __sk_buff *skb, bool query)
{
	struct dns_record *rec;
	struct sock_owner *owner;
	struct bpf_sock *sk;
	__u8 addr[16] = {};
	__u32 off, len;
	__u16 family;
	__u8 proto;
	bool tcp = false;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.frag_off & bpf_htons(0x3fff))
			return 1; /* a fragment: not a whole message */
		proto = ip.protocol;
		off = ip.ihl * 4;
		family = AF_INET;
		__builtin_memcpy(addr, query ? &ip.daddr : &ip.saddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		proto = ip6.nexthdr; /* extension headers: not followed */
		off = sizeof(ip6);
		family = AF_INET6;
		__builtin_memcpy(addr, query ? &ip6.daddr : &ip6.saddr, 16);
	} else {
		return 1;
	}

	if (proto == IPPROTO_UDP) {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)))
			return 1;
		if ((query ? uh.dest : uh.source) != bpf_htons(53))
			return 1;
		off += sizeof(uh);
	} else if (proto == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
			return 1;
		if ((query ? th.dest : th.source) != bpf_htons(53))
			return 1;
		off += th.doff * 4;
		tcp = true;
	} else {
		return 1;
	}

	if (off >= skb->len)
		return 1;
	len = skb->len - off;
	if (len > DNS_MAX - 1)
		len = DNS_MAX - 1;
	/* The barrier keeps clang from using an unclamped copy of len, and
	 * the mask gives the verifier bounds it can follow. */
	barrier_var(len);
	len &= DNS_MAX - 1;
	if (len < 12) /* shorter than a DNS header (or a bare ACK) */
		return 1;

	/* The socket that sent or receives the packet, and who made it. */
	sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	owner = bpf_sk_storage_get(&sock_owners, sk, 0, 0);
	if (!owner)
		return 1;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		stat_inc(STAT_LOST_DNS);
		return 1;
	}
	rec->kind = RECORD_DNS;
	rec->_pad0 = 0;
	rec->_pad1 = 0;
	rec->sock_cookie = bpf_get_socket_cookie(skb);
	__builtin_memcpy(rec->addr, addr, sizeof(rec->addr));
	rec->netns_ino = owner->netns_ino;
	rec->netns_cookie = owner->netns_cookie;
	rec->uid = owner->uid;
	rec->port = 53;
	rec->family = family;
	rec->tcp = tcp;
	rec->query = query;
	rec->len = len;
	if (bpf_skb_load_bytes(skb, off, rec->msg, len)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return 1;
	}
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	return 1;
}

SEC("cgroup_skb/egress")
int tcpconnect_dns_query(struct __sk_buff *skb)
{
	return dns_packet(skb, true);
}

SEC("cgroup_skb/ingress")
int tcpconnect_dns(struct __sk_buff *skb)
{
	return dns_packet(skb, false);
}

/* ---- why (outcome mode): what happened to the attempt's SYNs ----
 *
 * Three hooks, each on a path that every packet of the host takes, so
 * each one's first test throws away what is not a pending attempt's
 * packet, and only then looks it up in map attempts:
 *
 *   - cgroup_skb/egress on the cgroup v2 root: the SYN as it leaves, after
 *     the netfilter OUTPUT and POSTROUTING hooks (ip_finish_output runs the
 *     cgroup egress programs): its destination is the one NAT chose. Counts
 *     the SYN's transmissions.
 *   - tp_btf/kfree_skb: the SYN dropped on this host, with the kernel's
 *     drop reason (NETFILTER_DROP for an OUTPUT rule, which frees it before
 *     egress). Counts it as a transmission unless egress saw it already.
 *   - tp_btf/netif_receive_skb: an ICMP error quoting a TCP packet, kept by
 *     the quoted tuple in map icmp_errors until the attempt ends.
 */

static __always_inline bool same16(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

SEC("cgroup_skb/egress")
int tcpconnect_syn_out(struct __sk_buff *skb)
{
	struct bpf_sock *sk;
	__u8 daddr[16] = {};
	struct event *a;
	struct tcphdr th;
	__u64 key;
	__u32 off;

	/* First checks, for every packet: an attempt is pending, and this
	 * packet's socket waits for its answer. */
	if (!pending_attempts)
		return 1;
	sk = skb->sk;
	if (!sk || sk->state != BPF_TCP_SYN_SENT)
		return 1;
	key = (__u64)sk;
	a = bpf_map_lookup_elem(&attempts, &key);
	if (!a)
		return 1;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
			return 1;
		off = ip.ihl * 4;
		/* An IPv6 socket dialling ::ffff:a.b.c.d sends IPv4. */
		if (a->family == AF_INET)
			__builtin_memcpy(daddr, &ip.daddr, 4);
		else
			map4(daddr, ip.daddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_TCP)
			return 1;
		off = sizeof(ip6);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
		return 1;
	if (!th.syn || th.ack)
		return 1;

	a->syn_sent++;
	/* Kept to tell a later drop of this very skb (a full qdisc) from a
	 * SYN that never got here. */
	a->syn_skb = (__u64)skb;
	if (bpf_ntohs(th.dest) != a->dport || !same16(daddr, a->daddr)) {
		__builtin_memcpy(a->nat_daddr, daddr, 16);
		a->nat_dport = bpf_ntohs(th.dest);
		a->why |= WHY_NAT;
	}
	return 1;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tcpconnect_syn_drop, struct sk_buff *skb, void *location, int reason)
{
	struct sock *sk;
	struct net_device *dev;
	struct event *a;
	__u64 key;

	/* First checks, for every dropped packet: an attempt is pending,
	 * and this packet is owned by a socket waiting for its answer. */
	if (!pending_attempts)
		return 0;
	sk = skb->sk;
	if (!sk || sk->__sk_common.skc_state != TCP_SYN_SENT)
		return 0;
	/* Going out, not coming in: early demux also hands the socket any
	 * incoming segment with its tuple (the SYN-ACK, or a bare SYN with a
	 * bad checksum that anyone who knows the tuple can send, which the
	 * kernel drops and ignores). An incoming packet has its input
	 * device's index in skb_iif; one this host made and has not received
	 * has 0, whatever NAT did to it. What a SYN_SENT socket sends is its
	 * SYN. */
	if (skb->skb_iif)
		return 0;
	key = (__u64)sk;
	a = bpf_map_lookup_elem(&attempts, &key);
	if (!a)
		return 0;
	/* Dropped in this host's stack, not after crossing into another
	 * network namespace (a veth peer keeps skb->sk): the device, once
	 * set (ip_output), must be in the socket's namespace. */
	dev = skb->dev;
	if (dev && dev->nd_net.net != sk->__sk_common.skc_net.net)
		return 0;
	a->drop_reason = reason;
	a->why |= WHY_DROPPED;
	if ((__u64)skb != a->syn_skb)
		a->syn_sent++;
	return 0;
}

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_TIME_EXCEED 3
#define IPPROTO_ICMPV6 58

/* The 8-byte ICMP or ICMPv6 header. */
struct icmp_hdr8 {
	__u8 type;
	__u8 code;
	__u16 csum;
	__u32 rest;
};

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tcpconnect_icmp, struct sk_buff *skb)
{
	unsigned char *data;
	struct icmp_hdr8 ih;
	struct why_icmp_key k = {};
	struct why_icmp v = {};
	struct {
		__u16 sport;
		__u16 dport;
		__u32 seq;
	} quoted; /* the first 8 bytes of the quoted TCP header */
	__u32 off;

	/* An error about an attempt that already ended is of no use. */
	if (!pending_attempts)
		return 0;
	/* At this tracepoint skb->data is the network header (the link
	 * layer header has been pulled). */
	data = skb->data;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip, in;

		/* First check, for every packet: ICMP. */
		if (bpf_probe_read_kernel(&ip, sizeof(ip), data) || ip.protocol != IPPROTO_ICMP)
			return 0;
		off = ip.ihl * 4;
		if (bpf_probe_read_kernel(&ih, sizeof(ih), data + off))
			return 0;
		if (ih.type != ICMP_DEST_UNREACH && ih.type != ICMP_TIME_EXCEEDED)
			return 0;
		/* Fragmentation needed: path MTU discovery, never why a
		 * SYN failed (as ICMPv6 Packet Too Big, type 2, not kept). */
		if (ih.type == ICMP_DEST_UNREACH && ih.code == ICMP_FRAG_NEEDED)
			return 0;
		off += sizeof(ih);
		if (bpf_probe_read_kernel(&in, sizeof(in), data + off) || in.protocol != IPPROTO_TCP)
			return 0;
		off += in.ihl * 4;
		map4(k.daddr, in.daddr);
		map4(v.from, ip.saddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6, in6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), data) || ip6.nexthdr != IPPROTO_ICMPV6)
			return 0;
		off = sizeof(ip6);
		if (bpf_probe_read_kernel(&ih, sizeof(ih), data + off))
			return 0;
		if (ih.type != ICMPV6_DEST_UNREACH && ih.type != ICMPV6_TIME_EXCEED)
			return 0;
		off += sizeof(ih);
		if (bpf_probe_read_kernel(&in6, sizeof(in6), data + off) || in6.nexthdr != IPPROTO_TCP)
			return 0;
		off += sizeof(in6);
		__builtin_memcpy(k.daddr, &in6.daddr, 16);
		__builtin_memcpy(v.from, &ip6.saddr, 16);
	} else {
		return 0;
	}
	if (bpf_probe_read_kernel(&quoted, sizeof(quoted), data + off))
		return 0;
	k.sport = bpf_ntohs(quoted.sport);
	k.dport = bpf_ntohs(quoted.dport);
	/* The namespace the error arrived in: its device's. */
	k.netns_ino = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	v.seq = bpf_ntohl(quoted.seq);
	v.at_ns = bpf_ktime_get_ns();
	v.type = ih.type;
	v.code = ih.code;
	bpf_map_update_elem(&icmp_errors, &k, &v, BPF_ANY);
	return 0;
}

/* ---- The process: exec, fork and exit, on every backend ---- */

/* Writes the path of file f as task's root sees it into s->exe: its
 * components from the leaf up (the form struct proc documents), crossing
 * mount points through struct mount, as d_path() does, until task's root
 * or the top of the mount tree. Reads go through BPF_CORE_READ so that
 * the walk also works on kernels that do not trust these pointers. */
static __always_inline void read_exe(struct task_struct *task, struct file *f, struct proc *s)
{
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct dentry *root_d, *d, *up;
	struct vfsmount *root_m, *vm;
	struct mount *m, *mp;
	__u32 off;
	long n;

	s->exe_len = 0;
	if (!f) {
		s->flags |= PROC_NO_EXE;
		return;
	}
	root_d = BPF_CORE_READ(task, fs, root.dentry);
	root_m = BPF_CORE_READ(task, fs, root.mnt);
	d = BPF_CORE_READ(f, f_path.dentry);
	vm = BPF_CORE_READ(f, f_path.mnt);
	m = (struct mount *)((void *)vm - mnt_off);
	/* The length so far lives in s->exe_len, in map memory, not in a
	 * register: the verifier then sees the same state at the top of
	 * each step whichever way the step before went, and prunes. With a
	 * register holding the exact offset, the two kinds of step (a name,
	 * a mount crossing) would double the paths at every step. */
	for (int i = 0; i < PATH_DEPTH; i++) {
		if (d == root_d && vm == root_m)
			return;
		if (d == BPF_CORE_READ(vm, mnt_root)) {
			/* The top of a mount: continue at its mount point in
			 * the parent mount. */
			mp = BPF_CORE_READ(m, mnt_parent);
			if (mp == m)
				return;
			d = BPF_CORE_READ(m, mnt_mountpoint);
			m = mp;
			vm = (struct vfsmount *)((void *)m + mnt_off);
			continue;
		}
		up = BPF_CORE_READ(d, d_parent);
		off = s->exe_len;
		if (off > EXE_MAX - EXE_NAME_MAX)
			break;
		n = bpf_probe_read_kernel_str(&s->exe[off], EXE_NAME_MAX, BPF_CORE_READ(d, d_name.name));
		if (n <= 0)
			break;
		s->exe_len = off + n;
		/* A dentry that is its own parent but not a mount's root: a
		 * pseudo file (memfd_create: "memfd:NAME"), or a tree cut off
		 * from its mount. Its name is the whole path. */
		if (up == d)
			return;
		d = up;
	}
	s->flags |= PROC_EXE_CUT;
}

/* Copies the command line of the current task (mm->arg_start .. arg_end,
 * in its memory) into s->args. */
static __always_inline void read_args(struct task_struct *task, struct proc *s)
{
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end > start ? end - start : 0;

	s->args_len = len > 0xffffffff ? 0xffffffff : len;
	if (len > ARGS_MAX)
		len = ARGS_MAX;
	barrier_var(len);
	if (len > ARGS_MAX)
		return;
	s->args_size = 0;
	if (bpf_probe_read_user(s->args, len, (void *)start)) {
		s->flags |= PROC_NO_ARGS;
		return;
	}
	s->args_size = len;
}

/* --exe: the whole path, compared a word at a time (exe is zero padded
 * by the caller, filter_exe by user space). */
static __always_inline bool exe_matches(const struct proc *s)
{
	if (s->exe_len != filter_exe_len || (s->flags & (PROC_EXE_CUT | PROC_NO_EXE)))
		return false;
	for (int i = 0; i < EXE_MAX / 8; i++) {
		if (i * 8 >= s->exe_len)
			break;
		if (((const __u64 *)s->exe)[i] != filter_exe[i])
			return false;
	}
	return true;
}

/* sched_process_exec: after the new program is in place (begin_new_exec
 * set mm->exe_file, the arguments are in the new stack), in the task. For
 * a script, exe_file is the interpreter, as in /proc/PID/exe. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(tcpconnect_exec, struct task_struct *p)
{
	__u32 zero = 0, tgid = p->tgid;
	struct proc *s = bpf_map_lookup_elem(&proc_scratch, &zero);

	if (!s)
		return 0;
	s->exec_id = bpf_ktime_get_ns();
	s->flags = 0;
	s->sent = 0;
	s->args_len = 0;
	s->args_size = 0;
	__builtin_memset(s->exe, 0, sizeof(s->exe));
	read_exe(p, BPF_CORE_READ(p, mm, exe_file), s);
	read_args(p, s);
	if (filter_by_exe && exe_matches(s))
		s->flags |= PROC_EXE_MATCH;
	if (bpf_map_update_elem(&procs, &tgid, s, BPF_ANY))
		stat_inc(STAT_LOST_PROCS);
	return 0;
}

/* sched_process_fork: a new process runs its parent's program until it
 * execs; a new thread (same tgid) shares its process's entry. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(tcpconnect_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct proc *p;

	if (ptgid == ctgid)
		return 0;
	p = bpf_map_lookup_elem(&procs, &ptgid);
	if (!p) {
		/* Whatever a former owner of this PID left must go. */
		bpf_map_delete_elem(&procs, &ctgid);
		return 0;
	}
	if (bpf_map_update_elem(&procs, &ctgid, p, BPF_ANY)) {
		bpf_map_delete_elem(&procs, &ctgid);
		stat_inc(STAT_LOST_PROCS);
		return 0;
	}
	p = bpf_map_lookup_elem(&procs, &ctgid);
	if (p)
		p->sent = 0; /* the child's own record is still to be sent */
	return 0;
}

/* sched_process_exit: runs for every exiting thread, after do_exit
 * decremented signal->live; zero means the process's last thread. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(tcpconnect_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}
