// SPDX-License-Identifier: Apache-2.0

// Package kubernetes_test runs the DaemonSet of daemonset.yaml for real:
// its pod template, on this machine, under podman and runc.
package kubernetes_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// requireTool finds a program the test needs; where privileged tests are
// required (CI), a missing one fails the test.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("%s not found: install package %s", name, pkg)
		}
		t.Skipf("SKIPPING: %s not found (package %s)", name, pkg)
	}
	return p
}

// daemonSet reads the DaemonSet of daemonset.yaml.
func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	raw, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind == "DaemonSet" {
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
				t.Fatal(err)
			}
			return &ds
		}
	}
	t.Fatal("no DaemonSet in daemonset.yaml")
	return nil
}

// podFromTemplate makes the Pod that the DaemonSet controller would make
// for node, changed only where podman 4.3's kube play needs it: the image
// is the one this test built (never pulled), and the downward API's
// spec.nodeName, which kube play does not resolve, becomes the value the
// kubelet would give it.
func podFromTemplate(t *testing.T, ds *appsv1.DaemonSet, name, image, node string) *corev1.Pod {
	t.Helper()
	tmpl := ds.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
	pod.Spec.NodeName = node
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers in the template, want 1", len(pod.Spec.Containers))
	}
	c := &pod.Spec.Containers[0]
	c.Image = image
	c.ImagePullPolicy = corev1.PullNever
	for i, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			if e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Fatalf("env %s: fieldRef %s: only spec.nodeName is known here", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			c.Env[i] = corev1.EnvVar{Name: e.Name, Value: node}
		}
	}
	return pod
}

// podman runs podman with storage, configuration and runtime of the
// test's own, so that nothing of the host's podman is used or changed.
type podman struct {
	bin, dir, runc string
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(p.bin, append([]string{
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "vfs", "--runtime", p.runc,
	}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(p.dir, "containers.conf"))
	return cmd
}

func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// netnsClient is an HTTP client whose connections are made in the
// network namespace of pid: the pod's, where the metrics port is.
func netnsClient(pid int) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The thread enters the pod's namespace and is never
			// unlocked: Go ends it with the goroutine, so no other
			// goroutine ever runs in that namespace.
			runtime.LockOSThread()
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				ch <- result{err: fmt.Errorf("setns: %w", err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// scrape returns the samples of /metrics keyed by series.
func scrape(c *http.Client, url string) (map[string]float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, s.Err()
}

// procField returns a "Name:\tvalue" field of /proc/PID/status.
func procField(t *testing.T, pid int, name string) string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return ""
}

// TestDaemonSetUnderPodman builds the image with the release script, runs
// the DaemonSet's pod template with podman kube play under runc, checks
// that the manifest's security context is what the container got, and
// that connects made on the host are counted on the metrics endpoint.
func TestDaemonSetUnderPodman(t *testing.T) {
	requirePrivileged(t)
	pm := &podman{bin: requireTool(t, "podman", "podman"), runc: requireTool(t, "runc", "runc")}
	// Not t.TempDir(): podman refuses a run root path of 50 characters
	// or more.
	dir, err := os.MkdirTemp("", "tcpc-podman-")
	if err != nil {
		t.Fatal(err)
	}
	pm.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	// kube play builds the pod's infra (pause) image around catatonit.
	requireTool(t, "catatonit", "catatonit")
	ds := daemonSet(t)
	// default_ulimits = []: podman's default RLIMIT_NOFILE can exceed the
	// hard limit that this process may grant. pidns: podman 4.3's kube
	// play ignores hostPID (it learnt it in 4.4), so the manifest's
	// hostPID is given to it as the default PID namespace instead.
	conf := "[containers]\ndefault_ulimits = []\n"
	if ds.Spec.Template.Spec.HostPID {
		conf += "pidns = \"host\"\n"
	}
	if err := os.WriteFile(filepath.Join(pm.dir, "containers.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b))
	name := "tcpconnect-test-" + suffix
	node := "node-" + suffix
	const version = "v0.0.0-podmantest"
	image := "localhost/" + name

	// The image, as a release makes it, for this machine's architecture.
	dist := filepath.Join(pm.dir, "dist")
	rel := exec.Command(filepath.Join("..", "..", "tools", "release", "release.sh"), dist)
	rel.Env = append(os.Environ(), "ARCHS="+runtime.GOARCH, "PARTS=bin image", "IMAGE="+image, "VERSION="+version)
	if out, err := rel.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, out)
	}
	pm.run(t, "load", "-q", "-i", filepath.Join(dist, "tcpconnect_"+version+"_linux_"+runtime.GOARCH+".oci.tar"))
	tag := image + ":" + version + "-" + runtime.GOARCH
	t.Cleanup(func() {
		if out, err := pm.cmd("rmi", "-f", tag).CombinedOutput(); err != nil {
			t.Errorf("podman rmi: %v\n%s", err, out)
		}
		// The infra image that kube play built, and anything left over.
		if out, err := pm.cmd("system", "reset", "-f").CombinedOutput(); err != nil {
			t.Errorf("podman system reset: %v\n%s", err, out)
		}
	})

	pod := podFromTemplate(t, ds, name, tag, node)
	manifest, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	podFile := filepath.Join(pm.dir, "pod.yaml")
	if err := os.WriteFile(podFile, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	// kube play would build a directory named like the image instead of
	// using it: run it where there is none.
	empty := filepath.Join(pm.dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	play := pm.cmd("kube", "play", podFile)
	play.Dir = empty
	if out, err := play.CombinedOutput(); err != nil {
		t.Fatalf("podman kube play: %v\n%s\n%s", err, out, manifest)
	}
	ctr := name + "-" + pod.Spec.Containers[0].Name
	t.Cleanup(func() {
		down := pm.cmd("kube", "down", podFile)
		down.Dir = empty
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("podman kube down: %v\n%s", err, out)
		}
		if out, err := pm.cmd("pod", "exists", name).CombinedOutput(); err == nil {
			t.Errorf("pod %s still exists after kube down\n%s", name, out)
		}
	})
	logs := func() string {
		out, _ := pm.cmd("logs", ctr).CombinedOutput()
		return string(out)
	}

	pid, err := strconv.Atoi(pm.run(t, "inspect", "--format", "{{.State.Pid}}", ctr))
	if err != nil || pid <= 0 {
		t.Fatalf("container pid: %v (%s)", err, logs())
	}

	// The manifest's security context, as the container got it.
	t.Run("security", func(t *testing.T) {
		// CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39.
		const want = 1<<12 | 1<<21 | 1<<38 | 1<<39
		for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
			v, err := strconv.ParseUint(procField(t, pid, set), 16, 64)
			if err != nil || v != want {
				t.Errorf("%s = %s, want %016x (BPF, PERFMON, NET_ADMIN, SYS_ADMIN only)", set, procField(t, pid, set), uint64(want))
			}
		}
		if v := procField(t, pid, "Seccomp"); v != "2" {
			t.Errorf("Seccomp = %s, want 2 (filter): seccompProfile RuntimeDefault not applied", v)
		}
		if v := procField(t, pid, "NoNewPrivs"); v != "1" {
			t.Errorf("NoNewPrivs = %s: allowPrivilegeEscalation false not applied", v)
		}
		// hostPID: the container's PID namespace is the host's.
		mine, _ := os.Readlink("/proc/self/ns/pid")
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil || mine != theirs {
			t.Errorf("pid namespace %s, the host's is %s: hostPID not applied", theirs, mine)
		}
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil {
			t.Fatal(err)
		}
		opts := map[string]string{}
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 5 {
				opts[f[4]] = f[5]
			}
		}
		for _, mp := range []string{"/", "/sys/kernel/tracing", "/sys/fs/cgroup"} {
			o, ok := opts[mp]
			if !ok {
				t.Errorf("%s is not mounted in the container", mp)
			} else if !strings.HasPrefix(o, "ro") {
				t.Errorf("%s is mounted %s, want read-only", mp, o)
			}
		}
	})

	// The metrics port is the pod's, in the pod's network namespace.
	port := pod.Spec.Containers[0].Ports[0].ContainerPort
	client := netnsClient(pid)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %v; container log:\n%s", err, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}

	before, err := scrape(client, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	established := fmt.Sprintf(`tcpconnect_connects_total{family="ipv4",node=%q,result="established"}`, node)
	if _, ok := before[established]; !ok {
		t.Fatalf("no %s in the first scrape", established)
	}
	var info bool
	for k, v := range before {
		if strings.HasPrefix(k, "tcpconnect_info{") && strings.Contains(k, fmt.Sprintf(`node=%q`, node)) &&
			strings.Contains(k, fmt.Sprintf(`version=%q`, version)) && v == 1 {
			info = true
		}
	}
	if !info {
		t.Errorf("no tcpconnect_info with node %q and version %q", node, version)
	}

	// Connects made on the host, in its own network namespace, to a
	// listener of this test. Others on the host may connect too, so the
	// count must grow by at least n.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const n = 20
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		after, err := scrape(client, base+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		d := after[established] - before[established]
		if d >= n {
			t.Logf("%s: +%v after %d connects on the host", established, d, n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s grew by %v after %d connects on the host; container log:\n%s", established, d, n, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if l := logs(); !strings.Contains(l, "Tracing tcp connections") {
		t.Errorf("container log lacks the start line:\n%s", l)
	}
}

// requirePrivileged skips the test without root, loudly, or fails it when
// TCPCONNECT_REQUIRE_PRIVILEGED=1 (CI) says it must run. This module
// cannot import the tool's internal/testutil, which does the same.
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("TCPCONNECT_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("needs root, and TCPCONNECT_REQUIRE_PRIVILEGED=1 requires privileged tests to run")
	}
	t.Skip("SKIPPED LOUDLY: needs root (podman, runc, BPF); run ./test.sh as root")
}
