// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Capability bits (linux/capability.h); x/sys/unix has no names for the
// newer two.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// CheckPrivileges returns an error naming the capabilities that are
// missing to load and attach the programs, or nil.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capPerfmon) && !has(capSysAdmin) {
		missing = append(missing, "CAP_PERFMON")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if len(missing) > 0 {
		return fmt.Errorf("not enough privileges: missing %s (run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", strings.Join(missing, ", "))
	}
	return nil
}

// checkKernel reports the kernel requirements that every backend shares.
func checkKernel() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("kernel BTF not found at /sys/kernel/btf/vmlinux: this kernel lacks CONFIG_DEBUG_INFO_BTF, which tcpconnect needs (Linux 5.8 or newer built with BTF)")
	}
	return nil
}

// explain turns the kernel's terse errors into what the user can act on.
func explain(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		if perr := CheckPrivileges(); perr != nil {
			return perr
		}
	}
	return err
}

// verboseError renders err with the full verifier log, if there is one.
func verboseError(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("%+v", err)
	}
	return err.Error()
}

// unavailable says in words why backend b could not attach, when the
// cause is a missing kernel mechanism rather than our programs; err stays
// wrapped for -v and errors.Is.
func unavailable(b Backend, err error) error {
	switch {
	case b == BackendFentry && errors.Is(err, unix.EPERM):
		return fmt.Errorf("the kernel refuses fentry programs (BPF trampolines unavailable or locked down): %w", err)
	case b == BackendFentry && errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel has no fentry support: %w", err)
	case b == BackendKprobe && errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("this kernel has no kprobes (CONFIG_KPROBES off, or the function is not traceable): %w", err)
	case b == BackendSockops && errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no cgroup v2 hierarchy to attach to: %w", err)
	}
	return err
}
