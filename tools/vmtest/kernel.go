// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// kernelSpec pins one Debian kernel package. Exact versions keep runs
// reproducible; bump them (apt-cache madison PACKAGE) when Debian drops a
// version from its archive.
type kernelSpec struct {
	pkg     string // Debian binary package
	version string // its exact Debian version
	arch    string // Debian architecture: amd64 or arm64
}

// qemu returns the QEMU system emulator for the kernel's architecture
// and the Debian package that has it.
func (k kernelSpec) qemu() (bin, pkg string) {
	if k.arch == "arm64" {
		return "qemu-system-aarch64", "qemu-system-arm"
	}
	return "qemu-system-x86_64", "qemu-system-x86"
}

// release is the kernel's `uname -r`, which names /lib/modules/<release>
// and /boot/config-<release>.
func (k kernelSpec) release() string { return strings.TrimPrefix(k.pkg, "linux-image-") }

var kernels = map[string]kernelSpec{
	"6.1":  {pkg: "linux-image-6.1.0-57-amd64", version: "6.1.192-3", arch: "amd64"},
	"6.12": {pkg: "linux-image-6.12.117+deb12-amd64", version: "6.12.117-1~deb12u1", arch: "amd64"},
	// Booted by qemu-system-aarch64 under TCG; the guest command and
	// every -file binary must be built for arm64 (GOARCH=arm64).
	"6.12-arm64": {pkg: "linux-image-6.12.117+deb12-arm64", version: "6.12.117-1~deb12u1", arch: "arm64"},
}

func kernelNames() []string {
	var names []string
	for n := range kernels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// kernel is an unpacked kernel package in the cache.
type kernel struct {
	spec     kernelSpec
	root     string // the unpacked package (boot/, lib/modules/)
	vmlinux  string // uncompressed ELF image for QEMU's -kernel
	config   string // boot/config-<release>
	modCache string // decompressed modules
}

func (k *kernel) moduleDir() string {
	return filepath.Join(k.root, "lib", "modules", k.spec.release())
}

// prepareKernel makes sure that the pinned package is downloaded, unpacked
// and its vmlinux extracted in cacheDir, doing each step at most once. A
// lock file keeps concurrent runs from doing the same work twice.
func prepareKernel(spec kernelSpec, cacheDir string, logf func(string, ...any)) (*kernel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	base := filepath.Join(cacheDir, spec.pkg+"_"+spec.version)
	unlock, err := lockFile(base + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	k := &kernel{
		spec:     spec,
		root:     filepath.Join(base, "root"),
		vmlinux:  filepath.Join(base, "vmlinux"),
		config:   filepath.Join(base, "root", "boot", "config-"+spec.release()),
		modCache: filepath.Join(base, "modules"),
	}
	if _, err := os.Stat(k.root); errors.Is(err, os.ErrNotExist) {
		if err := downloadAndUnpack(spec, base, logf); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("check cache: %w", err)
	}
	if spec.arch == "arm64" {
		// Debian's arm64 vmlinuz is the uncompressed Image, which QEMU
		// boots as it is.
		k.vmlinux = filepath.Join(k.root, "boot", "vmlinuz-"+spec.release())
		if err := checkArm64Image(k.vmlinux); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(k.vmlinux); errors.Is(err, os.ErrNotExist) {
		logf("extracting vmlinux from %s", spec.pkg)
		bz, err := os.ReadFile(filepath.Join(k.root, "boot", "vmlinuz-"+spec.release()))
		if err != nil {
			return nil, fmt.Errorf("read bzImage: %w", err)
		}
		elfImage, err := extractVmlinux(bz)
		if err != nil {
			return nil, fmt.Errorf("extract vmlinux of %s: %w", spec.pkg, err)
		}
		if err := writeFileAtomic(k.vmlinux, elfImage, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(k.modCache, 0o755); err != nil {
		return nil, fmt.Errorf("create module cache: %w", err)
	}
	return k, nil
}

func downloadAndUnpack(spec kernelSpec, base string, logf func(string, ...any)) error {
	for _, tool := range []struct{ bin, pkg string }{{"apt-get", "apt"}, {"dpkg", "dpkg"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			return fmt.Errorf("%s not found: vmtest needs a Debian host (package %s)", tool.bin, tool.pkg)
		}
	}
	tmp := base + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clean %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer os.RemoveAll(tmp)

	logf("downloading %s=%s", spec.pkg, spec.version)
	if err := aptDownload(spec, tmp); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if os.Geteuid() != 0 {
			return fmt.Errorf("%w (try `apt-get update` as root)", err)
		}
		logf("apt-get download failed, running apt-get update and trying again")
		if out, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return fmt.Errorf("%w; apt-get update also failed: %v: %s", err, uerr, bytes.TrimSpace(out))
		}
		if err := aptDownload(spec, tmp); err != nil {
			return fmt.Errorf("%w (is %s still in Debian's archive? `apt-cache madison %s`; update the pin in tools/vmtest/kernel.go)", err, spec.version, spec.pkg)
		}
	}
	debs, err := filepath.Glob(filepath.Join(tmp, spec.pkg+"_*_"+spec.arch+".deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("apt-get download left %d packages named %s_*.deb in %s", len(debs), spec.pkg, tmp)
	}
	logf("unpacking %s", filepath.Base(debs[0]))
	if out, err := exec.Command("dpkg", "-x", debs[0], filepath.Join(tmp, "root")).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg -x %s: %w: %s", debs[0], err, bytes.TrimSpace(out))
	}
	// Only boot/ and lib/modules/ are used; the .deb itself is not kept.
	if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", base, err)
	}
	if err := os.Rename(filepath.Join(tmp, "root"), filepath.Join(base, "root")); err != nil {
		return fmt.Errorf("move unpacked kernel into the cache: %w", err)
	}
	return nil
}

// checkArm64Image checks the arm64 Image header's magic, "ARM\x64" at
// offset 0x38 (Documentation/arch/arm64/booting.rst).
func checkArm64Image(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read arm64 kernel: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x40)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[0x38:0x3c]) != "ARM\x64" {
		return fmt.Errorf("%s is not an uncompressed arm64 Image", p)
	}
	return nil
}

func aptDownload(spec kernelSpec, dir string) error {
	return aptGet(dir, spec.pkg+":"+spec.arch+"="+spec.version)
}

// aptGet downloads a package (NAME:ARCH=VERSION or NAME:ARCH) into dir.
// A foreign architecture must have been added first (dpkg
// --add-architecture arm64 && apt-get update).
func aptGet(dir, what string) error {
	args := []string{"download", "-q"}
	if os.Geteuid() == 0 {
		// As root, apt drops to the _apt user, which cannot write to an
		// arbitrary folder; it warns and goes on. Avoid the noise.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	cmd := exec.Command("apt-get", append(args, what)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		hint := ""
		if _, arch, _ := strings.Cut(what, ":"); arch != "" && !strings.HasPrefix(arch, hostArch()) {
			hint = " (for another architecture: dpkg --add-architecture ARCH && apt-get update)"
		}
		return fmt.Errorf("apt-get download %s: %w: %s%s", what, err, bytes.TrimSpace(out), hint)
	}
	return nil
}

// lockFile takes an exclusive flock on path, creating it and its folder
// if needed: in a fresh clone, guests started side by side each reach
// their lock before any of them has made the cache folder.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cache %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic writes through a temporary file and a rename so that a
// run that is killed halfway never leaves a truncated file in the cache.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// compression formats of bzImage payloads and modules, by magic.
type compression struct {
	name  string
	magic []byte
	tool  string // host command that decompresses stdin to stdout
	args  []string
	pkg   string // Debian package of tool
}

var compressions = []compression{
	// --single-stream: xz must stop at the end of the first stream and
	// not treat what follows as a corrupt second one.
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, tool: "xz", args: []string{"-dc", "--single-stream"}, pkg: "xz-utils"},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, tool: "zstd", args: []string{"-dcq"}, pkg: "zstd"},
	{name: "gzip", magic: []byte{0x1f, 0x8b, 0x08}},
}

func detectCompression(data []byte) *compression {
	for i := range compressions {
		if bytes.HasPrefix(data, compressions[i].magic) {
			return &compressions[i]
		}
	}
	return nil
}

func (c *compression) decompress(data []byte) ([]byte, error) {
	if c.tool == "" { // gzip: the standard library has it
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		zr.Multistream(false)
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		return out, nil
	}
	if _, err := exec.LookPath(c.tool); err != nil {
		return nil, fmt.Errorf("%s not found: install package %s (apt-get install %s)", c.tool, c.pkg, c.pkg)
	}
	cmd := exec.Command(c.tool, c.args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", c.tool, strings.Join(c.args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// decompressFile decompresses a .ko.xz / .ko.zst / .ko.gz module.
func decompressFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := detectCompression(data)
	if c == nil {
		return nil, fmt.Errorf("%s: unknown compression", path)
	}
	out, err := c.decompress(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// extractVmlinux returns the uncompressed ELF kernel inside a bzImage.
// QEMU boots such an ELF directly (PVH entry), which skips the in-guest
// decompressor: that takes seconds under TCG emulation.
//
// The x86 boot protocol (2.08+) gives the payload's place in the setup
// header; the payload ends with the 4-byte little-endian uncompressed size
// that the kernel's build appends, which also checks the result. If the
// header is unusable, the payload is searched for by its magic.
func extractVmlinux(bz []byte) ([]byte, error) {
	payload, exact, err := bzPayload(bz)
	if err != nil {
		return nil, err
	}
	c := detectCompression(payload)
	if c == nil {
		return nil, fmt.Errorf("unsupported payload compression (magic % x); supported: xz, zstd, gzip", payload[:min(6, len(payload))])
	}
	want := -1
	if exact {
		want = int(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
		payload = payload[:len(payload)-4]
	}
	out, err := c.decompress(payload)
	if err != nil {
		return nil, err
	}
	if want >= 0 && len(out) != want {
		return nil, fmt.Errorf("%s payload gave %d bytes, the image says %d", c.name, len(out), want)
	}
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%s payload is not an ELF file", c.name)
	}
	return out, nil
}

// bzPayload returns the compressed payload; exact tells whether its end is
// known (and so carries the size suffix).
func bzPayload(bz []byte) (payload []byte, exact bool, err error) {
	const (
		setupSectsOff = 0x1f1
		magicOff      = 0x202
		versionOff    = 0x206
		payloadOff    = 0x248
	)
	if len(bz) > payloadOff+8 && string(bz[magicOff:magicOff+4]) == "HdrS" &&
		binary.LittleEndian.Uint16(bz[versionOff:]) >= 0x208 {
		setupSects := int(bz[setupSectsOff])
		if setupSects == 0 {
			setupSects = 4
		}
		start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(bz[payloadOff:]))
		n := int(binary.LittleEndian.Uint32(bz[payloadOff+4:]))
		if n > 4 && start+n <= len(bz) {
			return bz[start : start+n], true, nil
		}
	}
	// Fallback: the first known magic after the boot sector. The end is
	// unknown, so assume the payload runs to the end of the file, which
	// xz (--single-stream) and gzip (single member) stop at their end.
	for i := 512; i < len(bz); i++ {
		if c := detectCompression(bz[i:]); c != nil && c.name != "zstd" {
			return bz[i:], false, nil
		}
	}
	return nil, false, errors.New("no bzImage header and no xz or gzip payload found")
}
