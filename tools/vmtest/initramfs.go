// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// exitMarker is printed by the guest's /init, alone on a line, with the
// guest command's exit status: the serial console is the only channel
// back to the host, and QEMU's own exit status says nothing about it.
const exitMarker = "VMTEST-EXIT="

// startMarker is the first line that /init prints: what comes before it
// on the console is firmware and kernel boot output.
const startMarker = "VMTEST-START"

// guestFile is a host file or directory to copy into the guest.
type guestFile struct {
	host  string
	guest string
}

// parseFileArg parses HOSTPATH[:GUESTPATH]. Without GUESTPATH the file
// lands in / under its own name.
func parseFileArg(s string) (guestFile, error) {
	host, guest, ok := strings.Cut(s, ":")
	if host == "" {
		return guestFile{}, fmt.Errorf("-file %q: empty host path", s)
	}
	if !ok || guest == "" {
		guest = "/" + filepath.Base(host)
	}
	if !path.IsAbs(guest) {
		return guestFile{}, fmt.Errorf("-file %q: guest path must be absolute", s)
	}
	return guestFile{host: host, guest: guest}, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// guestSpec is everything that goes into one run's initramfs.
type guestSpec struct {
	release string // kernel release (uname -r)
	config  string // host path of the kernel's config
	busybox string // host path of a static busybox for the guest
	// host path of a busybox that runs here, to list the applets (the
	// same as busybox unless the guest's architecture is another)
	busyboxList string
	modules     []string // host paths of uncompressed modules, in load order
	files       []guestFile
	hostBin     []string // host programs to copy with their shared libraries
	env         []string // KEY=VALUE, exported before the command runs
	cmd         []string
}

// buildArchive lays out the initramfs.
func buildArchive(g guestSpec) (*archive, error) {
	a := newArchive()
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "root", "mnt", "var/tmp", "etc"} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := a.Dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	// The kernel opens /dev/console for init before anything can mount
	// devtmpfs; without the node, init's output would go nowhere.
	if err := a.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := a.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return nil, err
	}

	if err := a.File("bin/busybox", 0o755, g.busybox); err != nil {
		return nil, err
	}
	list := g.busyboxList
	if list == "" {
		list = g.busybox
	}
	applets, err := busyboxApplets(list)
	if err != nil {
		return nil, err
	}
	for _, p := range applets {
		if err := a.Symlink(p, "/bin/busybox"); err != nil {
			return nil, err
		}
	}
	for _, b := range g.hostBin {
		if err := addHostBinary(a, b); err != nil {
			return nil, err
		}
	}
	// As on the host: iproute2 keeps named netns in /var/run/netns.
	if err := a.Symlink("var/run", "/run"); err != nil {
		return nil, err
	}

	etc := map[string]string{
		// Go's os/user and test helpers look users up here (no cgo, no NSS).
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	for name, content := range etc {
		if err := a.Bytes(name, 0o644, []byte(content)); err != nil {
			return nil, err
		}
	}

	// There is no /proc/config.gz in Debian's kernels; code that reads the
	// kernel config falls back to /boot/config-$(uname -r).
	if err := a.File("boot/config-"+g.release, 0o644, g.config); err != nil {
		return nil, err
	}

	var guestMods []string
	for _, m := range g.modules {
		gp := path.Join("/lib/modules", g.release, filepath.Base(m))
		if err := a.File(gp, 0o644, m); err != nil {
			return nil, err
		}
		guestMods = append(guestMods, gp)
	}

	for _, f := range g.files {
		if err := addHostPath(a, f); err != nil {
			return nil, err
		}
	}

	initScript, err := initScript(guestMods, g.env, resolveCommand(a, g.cmd))
	if err != nil {
		return nil, err
	}
	if err := a.Bytes("init", 0o755, []byte(initScript)); err != nil {
		return nil, err
	}
	return a, nil
}

// guestPath is the PATH that /init sets.
var guestPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// resolveCommand gives a bare command name its full guest path when it is
// a program of ours (-file, -hostbin) rather than a busybox applet. The
// Debian busybox's sh runs its own applet for a bare name whatever PATH
// says, which would turn "ip" into busybox's ip even with -hostbin ip.
func resolveCommand(a *archive, cmd []string) []string {
	if len(cmd) == 0 || strings.Contains(cmd[0], "/") {
		return cmd
	}
	for _, dir := range guestPath {
		e, ok := a.entries[strings.TrimPrefix(path.Join(dir, cmd[0]), "/")]
		if !ok || e.mode&syscall.S_IFMT == syscall.S_IFDIR {
			continue
		}
		if e.mode&syscall.S_IFMT == syscall.S_IFLNK && e.target == "/bin/busybox" {
			return cmd
		}
		return append([]string{path.Join(dir, cmd[0])}, cmd[1:]...)
	}
	return cmd
}

// addHostPath copies a file, or a directory tree, into the archive. Files
// are made executable: the point of -file is mostly test binaries, and
// their mode bits are easily lost on the way (downloads, go test -c -o).
func addHostPath(a *archive, f guestFile) error {
	fi, err := os.Stat(f.host)
	if err != nil {
		return fmt.Errorf("-file: %w", err)
	}
	if !fi.IsDir() {
		return a.File(f.guest, 0o755, f.host)
	}
	return filepath.WalkDir(f.host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(f.host, p)
		if err != nil {
			return err
		}
		gp := path.Join(f.guest, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return a.Dir(gp, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return a.Symlink(gp, target)
		case d.Type().IsRegular():
			return a.File(gp, 0o755, p)
		}
		return nil // sockets, fifos: nothing to copy
	})
}

// checkBusybox makes sure that path is a statically linked busybox: the
// guest has no libc to run a dynamic one.
func checkBusybox(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("busybox at %s: %w (install the busybox-static package)", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox at %s is dynamically linked: install the busybox-static package (apt-get install busybox-static)", p)
		}
	}
	return nil
}

// busyboxApplets lists the applet paths (like "sbin/ip") that the host's
// busybox provides, for symlinks to it in the guest.
func busyboxApplets(bb string) ([]string, error) {
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var applets []string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		p := strings.TrimSpace(s.Text())
		// /init is ours; linuxrc would be unused and confusing.
		if p == "" || p == "linuxrc" || p == "bin/busybox" {
			continue
		}
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("busybox %s lists no applets", bb)
	}
	return applets, nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// initScript generates the guest's /init (run by busybox sh as PID 1).
// The command line is written into the script rather than passed on the
// kernel command line, which has a small size limit and its own quoting.
func initScript(modules, env, cmd []string) (string, error) {
	if len(cmd) == 0 {
		return "", fmt.Errorf("no guest command")
	}
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# Generated by tools/vmtest: set up a minimal system, run one command,
# report its exit status on the console and power off.
printf '\n` + startMarker + `\n'
export PATH=` + strings.Join(guestPath, ":") + `
export HOME=/root TMPDIR=/tmp
m() { mount "$@" || echo "vmtest: mount $* failed" >&2; }
m -t proc proc /proc
m -t sysfs sysfs /sys
m -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
m -t devpts devpts /dev/pts
m -t tmpfs -o mode=1777 tmpfs /dev/shm
m -t tmpfs -o mode=1777 tmpfs /tmp
m -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /sys/fs/bpf /sys/kernel/tracing /sys/kernel/debug /sys/fs/cgroup
m -t bpf bpf /sys/fs/bpf
m -t tracefs tracefs /sys/kernel/tracing
m -t debugfs debugfs /sys/kernel/debug
m -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up || echo "vmtest: cannot bring up lo" >&2
`)
	for _, mod := range modules {
		// A module that fails to load is reported but not fatal: the
		// command decides whether it needed it.
		fmt.Fprintf(&b, "insmod %s || echo \"vmtest: insmod %s failed\" >&2\n", shellQuote(mod), path.Base(mod))
	}
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envName.MatchString(k) {
			return "", fmt.Errorf("-env %q: want NAME=VALUE", kv)
		}
		fmt.Fprintf(&b, "export %s\n", shellQuote(kv))
	}
	quoted := make([]string, len(cmd))
	for i, c := range cmd {
		quoted[i] = shellQuote(c)
	}
	fmt.Fprintf(&b, `cd /
%s </dev/null
rc=$?
# The leading newline keeps the marker on a line of its own even when the
# command's output did not end with one.
printf '\n%s%%d\n' "$rc"
poweroff -f
`, strings.Join(quoted, " "), exitMarker)
	return b.String(), nil
}
