// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// hostArch is the host's Debian architecture (amd64 and arm64 are spelled
// as Go spells them).
func hostArch() string { return runtime.GOARCH }

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// guestBusybox returns a static busybox for the guest's architecture: the
// host's own (package busybox-static) for the host's architecture, else
// Debian's busybox-static for arch, downloaded once into the cache. The
// applets are listed by running the host's busybox, which a foreign one
// cannot do here; both come from the same Debian release.
func guestBusybox(arch, cacheDir string, logf func(string, ...any)) (guest, host string, err error) {
	host, err = findBusybox()
	if err != nil {
		return "", "", err
	}
	if arch == hostArch() {
		return host, host, nil
	}
	base := filepath.Join(cacheDir, "busybox-static_"+arch)
	guest = filepath.Join(base, "root", "bin", "busybox")
	unlock, err := lockFile(base + ".lock")
	if err != nil {
		return "", "", err
	}
	defer unlock()
	if _, err := os.Stat(guest); errors.Is(err, os.ErrNotExist) {
		tmp := base + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", "", err
		}
		defer os.RemoveAll(tmp)
		logf("downloading busybox-static:%s", arch)
		if err := aptGet(tmp, "busybox-static:"+arch); err != nil {
			return "", "", err
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*_"+arch+".deb"))
		if len(debs) != 1 {
			return "", "", fmt.Errorf("apt-get download left %d busybox-static packages in %s", len(debs), tmp)
		}
		if out, err := exec.Command("dpkg", "-x", debs[0], filepath.Join(tmp, "root")).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("dpkg -x %s: %w: %s", debs[0], err, bytes.TrimSpace(out))
		}
		if err := os.RemoveAll(base); err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", "", err
		}
		if err := os.Rename(filepath.Join(tmp, "root"), filepath.Join(base, "root")); err != nil {
			return "", "", err
		}
	} else if err != nil {
		return "", "", err
	}
	if err := checkBusybox(guest); err != nil {
		return "", "", err
	}
	if err := checkMachine(guest, arch); err != nil {
		return "", "", err
	}
	return guest, host, nil
}

// checkMachine makes sure that an ELF file is built for arch.
func checkMachine(p, arch string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if want, ok := elfMachine[arch]; ok && f.Machine != want {
		return fmt.Errorf("%s is built for %v, not %s", p, f.Machine, arch)
	}
	return nil
}
