// SPDX-License-Identifier: Apache-2.0

// Package kubernetes holds the manifests for running tcpconnect on every
// node of a cluster, and the tests that read them with the Kubernetes API
// types. It is a module of its own so that the tool's go.mod does not
// list k8s.io.
package kubernetes

import (
	"os"
	"regexp"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// readDaemonSet parses the DaemonSet of deploy/kubernetes.
func readDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	raw, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var found *appsv1.DaemonSet
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("a document of daemonset.yaml: %v", err)
		}
		if meta.Kind != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		// Strict: a misspelt field would be silently dropped by the API
		// server's older versions and by this test otherwise.
		if err := yaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
			t.Fatalf("DaemonSet: %v", err)
		}
		if found != nil {
			t.Fatal("two DaemonSets in daemonset.yaml")
		}
		found = &ds
	}
	if found == nil {
		t.Fatal("no DaemonSet in daemonset.yaml")
	}
	return found
}

// TestDaemonSetManifest checks the security-relevant parts of the
// DaemonSet. That the tool accepts its arguments is checked beside the
// flag parser (TestDaemonSetArgs in cmd/tcpconnect).
func TestDaemonSetManifest(t *testing.T) {
	ds := readDaemonSet(t)
	if ds.APIVersion != "apps/v1" {
		t.Errorf("apiVersion %q", ds.APIVersion)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is not true")
	}
	if spec.HostNetwork {
		t.Error("hostNetwork: the tool needs no host network namespace to trace")
	}
	sel, labels := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels
	if len(sel) == 0 {
		t.Error("no selector")
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels %v", k, v, labels)
		}
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged is not explicitly false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	add := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if want := []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}; !slices.Equal(add, want) {
		t.Errorf("capabilities add %v, want exactly %v", add, want)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Limits[res]; !ok || q.IsZero() {
			t.Errorf("no %s limit", res)
		}
		if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
			t.Errorf("no %s request", res)
		}
	}
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			port = &c.Ports[i]
		}
	}
	if port == nil || port.ContainerPort != 9464 {
		t.Fatalf("ports %+v: want one named metrics on 9464", c.Ports)
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9464" {
		t.Errorf("scrape annotations %v", ann)
	}
	var nodeEnv bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeEnv = true
		}
	}
	if !nodeEnv {
		t.Error("no NODE_NAME from the downward API (spec.nodeName)")
	}
	// Every host path is mounted read-only.
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok {
			if !m.ReadOnly {
				t.Errorf("host path %s is mounted writable", p)
			}
			mounted[p] = true
		}
	}
	for _, p := range []string{"/sys/kernel/tracing", "/sys/fs/cgroup"} {
		if !mounted[p] {
			t.Errorf("host path %s is not mounted", p)
		}
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Error("no readiness probe on /healthz")
	}

	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's entrypoint", c.Command)
	}
}
