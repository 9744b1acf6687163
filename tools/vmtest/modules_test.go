// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/veth.ko":                  "veth",
		"kernel/arch/x86/crypto/crc32c-intel.ko.xz":   "crc32c_intel",
		"/x/kernel/net/sched/sch_netem.ko.zst":        "sch_netem",
		"kernel/net/ipv4/netfilter/nf_reject_ipv4.ko": "nf_reject_ipv4",
		"kernel/arch/x86/events/amd/amd-uncore.ko.gz": "amd_uncore",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseModinfo(t *testing.T) {
	sec := []byte("license=GPL\x00depends=nf_tables,nf_reject_ipv4,nft-reject\x00softdep=pre: crc32c post: foo\x00name=x\x00\x00vermagic=6.1\x00")
	mi := parseModinfo(sec)
	if want := []string{"nf_tables", "nf_reject_ipv4", "nft_reject"}; !reflect.DeepEqual(mi.depends, want) {
		t.Errorf("depends = %q, want %q", mi.depends, want)
	}
	if want := []string{"crc32c"}; !reflect.DeepEqual(mi.softPre, want) {
		t.Errorf("softPre = %q, want %q", mi.softPre, want)
	}
	if mi := parseModinfo([]byte("depends=\x00name=veth\x00")); len(mi.depends) != 0 {
		t.Errorf("empty depends gave %q", mi.depends)
	}
}

// fakeModules is a module graph like Debian 6.1's nf_tables corner.
var fakeModules = map[string]modinfo{
	"veth":            {},
	"nfnetlink":       {},
	"crc32c_generic":  {},
	"libcrc32c":       {softPre: []string{"crc32c"}},
	"nf_tables":       {depends: []string{"nfnetlink", "libcrc32c"}},
	"nft_reject":      {depends: []string{"nf_tables"}},
	"nf_reject_ipv4":  {},
	"nf_reject_ipv6":  {},
	"nft_reject_inet": {depends: []string{"nf_tables", "nf_reject_ipv4", "nf_reject_ipv6", "nft_reject"}},
	"uses_builtin":    {depends: []string{"builtin_one"}},
	"soft_missing":    {softPre: []string{"nowhere"}},
	"hard_missing":    {depends: []string{"nowhere"}},
	"cycle_a":         {depends: []string{"cycle_b"}},
	"cycle_b":         {depends: []string{"cycle_a"}},
}

func fakeResolve(want ...string) ([]string, []string, error) {
	var warnings []string
	order, err := resolveModules(want,
		func(n string) bool { return n == "builtin_one" },
		func(n string) (modinfo, error) {
			mi, ok := fakeModules[n]
			if !ok {
				return modinfo{}, fmt.Errorf("module %s: %w", n, errNoModule)
			}
			return mi, nil
		},
		func(s string) { warnings = append(warnings, s) })
	return order, warnings, err
}

func TestResolveModulesOrder(t *testing.T) {
	order, warnings, err := fakeResolve("veth", "nft_reject_inet", "nf_tables", "builtin_one", "uses_builtin")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"veth", "nfnetlink", "crc32c_generic", "libcrc32c", "nf_tables", "nf_reject_ipv4", "nf_reject_ipv6", "nft_reject", "nft_reject_inet", "uses_builtin"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("order = %q\nwant    %q", order, want)
	}
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings %q", warnings)
	}
	// Every module comes after all of its dependencies.
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	for _, n := range order {
		for _, d := range fakeModules[n].depends {
			if dp, ok := pos[d]; ok && dp > pos[n] {
				t.Errorf("%s loads before its dependency %s", n, d)
			}
		}
	}
}

func TestResolveModulesErrors(t *testing.T) {
	order, warnings, err := fakeResolve("soft_missing")
	if err != nil || !reflect.DeepEqual(order, []string{"soft_missing"}) || len(warnings) != 1 {
		t.Errorf("missing softdep: order %q, warnings %q, err %v", order, warnings, err)
	}
	if _, _, err := fakeResolve("hard_missing"); !errors.Is(err, errNoModule) || !strings.Contains(err.Error(), "needed by hard_missing") {
		t.Errorf("missing hard dependency: err = %v", err)
	}
	if _, _, err := fakeResolve("no_such"); !errors.Is(err, errNoModule) {
		t.Errorf("unknown module: err = %v", err)
	}
	if _, _, err := fakeResolve("cycle_a"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err = %v", err)
	}
}
