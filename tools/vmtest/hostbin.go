// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// parseLdd returns the absolute paths of the shared objects (and the
// dynamic loader) in ldd's output. The vDSO has no file and is skipped.
//
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)
func parseLdd(out string) ([]string, error) {
	var libs []string
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		if _, right, ok := strings.Cut(line, "=>"); ok {
			f := strings.Fields(right)
			if len(f) == 0 || f[0] == "not" { // "=> not found"
				return nil, fmt.Errorf("missing shared library: %s", line)
			}
			if strings.HasPrefix(f[0], "/") {
				libs = append(libs, f[0])
			}
			continue
		}
		if f := strings.Fields(line); strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	return libs, s.Err()
}

// addHostBinary copies a dynamically linked host program (say nft, tc or
// iproute2's ip, which busybox lacks or only partly has) into the guest at
// the same path, with the shared libraries that ldd lists at the paths
// that the dynamic loader looks for. Busybox applets of the same name are
// dropped so that the full program is the one found on PATH.
func addHostBinary(a *archive, name string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("-hostbin %s: %w", name, err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return fmt.Errorf("-hostbin %s: %w", name, err)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		// ldd fails ("not a dynamic executable") for static programs,
		// which need nothing else.
		out = nil
	}
	libs, err := parseLdd(string(out))
	if err != nil {
		return fmt.Errorf("-hostbin %s: %w", name, err)
	}
	for _, lib := range libs {
		if err := a.File(lib, 0o755, lib); err != nil {
			return fmt.Errorf("-hostbin %s: %w", name, err)
		}
	}
	base := filepath.Base(bin)
	for p, e := range a.entries {
		if e.mode&syscall.S_IFMT == syscall.S_IFLNK && e.target == "/bin/busybox" && path.Base(p) == base {
			delete(a.entries, p)
		}
	}
	return a.File(bin, 0o755, bin)
}
