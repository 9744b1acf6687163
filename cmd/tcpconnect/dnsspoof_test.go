// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/tcpconnect/tcpconnect/internal/testutil"
	"github.com/vishvananda/netlink"
)

// dnsChildEnv makes the test binary a DNS child (runDNSChildIfRequested):
// "attacker" forges answers in a network namespace of its own; "resolve
// SERVER NAME ADDRPORT" resolves NAME through SERVER and connects to
// ADDRPORT.
const dnsChildEnv = "TCPCONNECT_TEST_DNS_CHILD"

// runDNSChildIfRequested is called first in TestMain.
func runDNSChildIfRequested() {
	spec := os.Getenv(dnsChildEnv)
	if spec == "" {
		return
	}
	var err error
	f := strings.Fields(spec)
	switch {
	case f[0] == "unshare" && len(f) == 2:
		err = dnsUnshare()
	case f[0] == "attacker" && len(f) == 2:
		err = dnsAttacker(f[1])
	case f[0] == "resolve" && len(f) == 4:
		err = dnsResolveAndConnect(f[1], f[2], netip.MustParseAddrPort(f[3]))
	default:
		err = fmt.Errorf("unknown child %q", spec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(0)
}

// dnsUnshare runs as an unprivileged user and starts the attacker as
// unshare -Urn would: in a user namespace of its own (this user is root
// there) with a network namespace of its own.
func dnsUnshare() error {
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), dnsChildEnv+"=attacker "+strings.Fields(os.Getenv(dnsChildEnv))[1])
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	uid, gid := os.Getuid(), os.Getgid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	return cmd.Run()
}

// bankName is the name the attacker wants root's connects to 127.0.0.1
// to show.
const bankName = "www.bank.example."

// dnsAttacker runs as an unprivileged user in a user and network
// namespace of its own (dnsUnshare), where it may bind port 53. It
// sends answers for bankName (127.0.0.1) that answer no query of the
// socket receiving them: unsolicited, with a wrong ID, from a server
// that was not asked. Then it connects to 127.0.0.1 and prints "forged
// SPORT DPORT". Then it asks for real, answers for real, connects again
// and prints "real SPORT DPORT": its own connect may carry the name.
func dnsAttacker(port string) error {
	runtime.LockOSThread()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	srv, err := net.ListenPacket("udp4", "127.0.0.1:53")
	if err != nil {
		return err
	}
	other, err := net.ListenPacket("udp4", "127.0.0.2:53")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+port)
	if err != nil {
		return err
	}
	go testutil.AcceptAndClose(ln)
	target := ln.Addr().(*net.TCPAddr).AddrPort()

	answer := func(id uint16) []byte {
		q := new(dns.Msg)
		q.SetQuestion(bankName, dns.TypeA)
		r := new(dns.Msg)
		r.SetReply(q)
		r.Id = id
		rr, _ := dns.NewRR(bankName + " 300 IN A 127.0.0.1")
		r.Answer = append(r.Answer, rr)
		b, _ := r.Pack()
		return b
	}
	client := func() (*net.UDPConn, error) {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	// ask sends a query for bankName from c and returns its ID once the
	// server has read it.
	ask := func(c *net.UDPConn, id uint16) error {
		q := new(dns.Msg)
		q.SetQuestion(bankName, dns.TypeA)
		q.Id = id
		b, _ := q.Pack()
		if _, err := c.WriteTo(b, srv.LocalAddr()); err != nil {
			return err
		}
		buf := make([]byte, 512)
		srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := srv.ReadFrom(buf)
		return err
	}
	// Each forgery goes to a socket of its own, which must receive it:
	// the packet really reached a socket and its program.
	forge := func(c *net.UDPConn, from net.PacketConn, id uint16) error {
		if _, err := from.WriteTo(answer(id), c.LocalAddr()); err != nil {
			return err
		}
		buf := make([]byte, 512)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := c.ReadFrom(buf)
		return err
	}
	steps := []func(c *net.UDPConn) error{
		// Unsolicited: nobody asked.
		func(c *net.UDPConn) error { return forge(c, srv, 0x4242) },
		// Asked, but answered with another ID.
		func(c *net.UDPConn) error {
			if err := ask(c, 0x1111); err != nil {
				return err
			}
			return forge(c, srv, 0x1112)
		},
		// Asked 127.0.0.1:53, answered from 127.0.0.2:53.
		func(c *net.UDPConn) error {
			if err := ask(c, 0x2222); err != nil {
				return err
			}
			return forge(c, other, 0x2222)
		},
	}
	for i, step := range steps {
		c, err := client()
		if err != nil {
			return err
		}
		err = step(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("forgery %d: %w", i, err)
		}
	}
	sport, errno := testutil.ConnectRaw(target)
	if errno != 0 {
		return errno
	}
	fmt.Printf("forged %d %d\n", sport, target.Port())

	c, err := client()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := ask(c, 0x3333); err != nil {
		return err
	}
	if err := forge(c, srv, 0x3333); err != nil {
		return err
	}
	sport, errno = testutil.ConnectRaw(target)
	if errno != 0 {
		return errno
	}
	fmt.Printf("real %d %d\n", sport, target.Port())
	return nil
}

// dnsResolveAndConnect resolves name through server and connects to
// target; it prints "SPORT" and fails unless name resolved to target's
// address.
func dnsResolveAndConnect(server, name string, target netip.AddrPort) error {
	runtime.LockOSThread()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(m, server)
	if err != nil {
		return err
	}
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != target.Addr().String() {
		return fmt.Errorf("%s resolved to %v", name, r.Answer)
	}
	sport, errno := testutil.ConnectRaw(target)
	if errno != 0 {
		return errno
	}
	fmt.Println(sport)
	return nil
}

// TestDNSForgeryByUnprivilegedUser: an unprivileged user in namespaces
// of their own forges answers for www.bank.example -> 127.0.0.1
// (unsolicited, wrong ID, wrong server) and then resolves it for real
// from a server they run. No forgery names even their own connect; the
// real answer names their own connect only, never root's connect to
// 127.0.0.1 in the host's network namespace.
func TestDNSForgeryByUnprivilegedUser(t *testing.T) {
	testutil.RequirePrivileged(t)
	hostTarget := testutil.Listen(t, nil, "tcp4", "127.0.0.1:0")
	// The attacker listens on the same port in its own namespace, so
	// that -P keeps the host's other connects out of the output.
	port := strconv.Itoa(int(hostTarget.Port()))
	p := startTool(t, "-d", "--json", "-P", port)

	// As nobody, who then makes a user and a network namespace.
	cmd := exec.Command(testutil.WorldExecutable(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), dnsChildEnv+"=unshare "+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("attacker: %v: %s %s", err, out, ee.Stderr)
		}
		t.Fatalf("attacker: %v", err)
	}
	lines := map[string][2]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			lines[f[0]] = [2]string{f[1], f[2]}
		}
	}
	if len(lines) != 2 {
		t.Fatalf("attacker said %q", out)
	}
	find := func(what string) map[string]any {
		t.Helper()
		sp := lines[what]
		return decodeJSON(t, p.waitLine(t, `"sport":`+sp[0]+",", `"dport":`+sp[1]+",", `"daddr":"127.0.0.1"`))
	}
	if ev := find("forged"); ev["daddr_name"] != nil {
		t.Errorf("forged answers named the attacker's connect: %v", ev["daddr_name"])
	}
	if ev := find("real"); ev["daddr_name"] != "www.bank.example" || ev["uid"] != float64(65534) {
		t.Errorf("the attacker's real answer did not name their own connect: daddr_name %v uid %v", ev["daddr_name"], ev["uid"])
	}

	sport, errno := testutil.ConnectRaw(hostTarget)
	if errno != 0 {
		t.Fatal(errno)
	}
	ev := decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport), fmt.Sprintf(`"dport":%d,`, hostTarget.Port())))
	if ev["daddr_name"] != nil {
		t.Errorf("root's connect to 127.0.0.1 in the host namespace shows %v", ev["daddr_name"])
	}
	p.stop(t, syscall.SIGINT)
}

// TestDNSNamesStayWithTheirUser: in one network namespace, a user who
// resolves a name of their choosing to an address (a real answer from a
// real server) names their own connects to it, not root's.
func TestDNSNamesStayWithTheirUser(t *testing.T) {
	testutil.RequirePrivileged(t)
	ns := testutil.NewNetNS(t)
	startDNS(t, ns, "127.0.0.53:53")
	target := testutil.Listen(t, ns, "tcp4", "127.0.0.1:0")
	p := startTool(t, "-d", "--json", "-P", strconv.Itoa(int(target.Port())))

	var out []byte
	if err := ns.Do(func() error {
		cmd := exec.Command(testutil.WorldExecutable(t), "-test.run=^$")
		cmd.Env = append(os.Environ(), dnsChildEnv+"=resolve 127.0.0.53:53 steer.test. "+target.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var err error
		out, err = cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return err
	}); err != nil {
		t.Fatalf("child: %v", err)
	}
	ev := decodeJSON(t, p.waitLine(t, `"sport":`+strings.TrimSpace(string(out))+","))
	if ev["daddr_name"] != "steer.test" || ev["uid"] != float64(65534) {
		t.Errorf("the user's own connect: daddr_name %v uid %v", ev["daddr_name"], ev["uid"])
	}
	var sport uint16
	if err := ns.Do(func() error {
		var errno syscall.Errno
		sport, errno = testutil.ConnectRaw(target)
		if errno != 0 {
			return errno
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ev = decodeJSON(t, p.waitLine(t, fmt.Sprintf(`"sport":%d,`, sport)))
	if ev["daddr_name"] != nil || ev["uid"] != float64(0) {
		t.Errorf("root's connect in the same namespace: daddr_name %v uid %v", ev["daddr_name"], ev["uid"])
	}
	p.stop(t, syscall.SIGINT)
}

// TestDNSLossReported: answers that a small ring buffer cannot hold are
// reported like lost events: a warning while running, the exit line and
// a Prometheus counter; with what was read they add up to at least what
// was sent (other DNS traffic of the host may add to both).
func TestDNSLossReported(t *testing.T) {
	testutil.RequirePrivileged(t)
	ns := testutil.NewNetNS(t)
	// -P 9: no connect of the host is printed, so no output piles up
	// while nothing reads it.
	p := startTool(t, "-d", "--buffer-size", "4K", "--metrics-addr", "127.0.0.1:0", "-P", "9")
	base := p.metricsURL(t)

	const sent = 20000
	msg := new(dns.Msg)
	msg.SetQuestion("flood.test.", dns.TypeA)
	msg.Response = true
	b, _ := msg.Pack()
	if err := ns.Do(func() error {
		rx, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer rx.Close()
		tx, err := net.ListenPacket("udp4", "127.0.0.1:53")
		if err != nil {
			return err
		}
		defer tx.Close()
		go func() {
			buf := make([]byte, 512)
			for {
				if _, _, err := rx.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		for range sent {
			if _, err := tx.WriteTo(b, rx.LocalAddr()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), "DNS messages lost (ring buffer full") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about lost DNS messages: %s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, err := scrapeMetrics(base)
	if err != nil {
		t.Fatal(err)
	}
	scraped := m["tcpconnect_dns_messages_lost_total"]
	p.stop(t, syscall.SIGINT)

	exit := regexp.MustCompile(`, (\d+) DNS messages lost \(names may be missing\).*, (\d+) DNS messages read`).FindStringSubmatch(p.stderr.String())
	if exit == nil {
		t.Fatalf("exit line does not count lost DNS messages: %s", p.stderr.String())
	}
	lost, _ := strconv.ParseUint(exit[1], 10, 64)
	read, _ := strconv.ParseUint(exit[2], 10, 64)
	if lost == 0 || scraped == 0 || scraped > float64(lost) {
		t.Errorf("lost %d at exit, %v scraped before", lost, scraped)
	}
	if lost+read < sent {
		t.Errorf("%d lost + %d read < %d sent: some went unreported", lost, read, sent)
	}
}
