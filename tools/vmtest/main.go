// SPDX-License-Identifier: Apache-2.0

// Command vmtest runs a command of the project inside one of Debian's
// kernels under QEMU and exits with that command's exit status: a host
// whose kernel has no kprobes and no fentry tests the tracer's other
// attach paths for real this way.
//
//	cd tools && go run ./vmtest -kernel 6.1|6.12 [-cache DIR] [-file HOSTPATH[:GUESTPATH]]... \
//	    [-env NAME=VALUE]... [-module NAME]... [-hostbin PROGRAM]... [-timeout 10m] [-v] \
//	    -- GUESTCMD [ARGS...]
//
// Exit status: the guest command's; 124 on timeout; 125 when vmtest
// itself fails (missing host package, download, boot failure).
package main

import (
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	exitTimeout = 124
	exitFailure = 125
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		kernelName = flag.String("kernel", "", "kernel to boot: "+strings.Join(kernelNames(), " or "))
		cacheDir   = flag.String("cache", "", "cache for kernel packages (default <repo>/.cache/vmtest)")
		timeout    = flag.Duration("timeout", 10*time.Minute, "limit for boot and command together")
		verbose    = flag.Bool("v", false, "show kernel boot messages and vmtest's steps")
		files      listFlag
		env        listFlag
		modules    listFlag
		hostBins   listFlag
	)
	flag.Var(&files, "file", "copy `HOSTPATH[:GUESTPATH]` (file or folder) into the guest, executable (repeatable; default GUESTPATH /BASENAME)")
	flag.Var(&hostBins, "hostbin", "copy host `PROGRAM` (e.g. nft, tc, ip) with its shared libraries to the same path in the guest (repeatable)")
	flag.Var(&env, "env", "`NAME=VALUE` to set for the guest command (repeatable)")
	flag.Var(&modules, "module", "extra kernel `MODULE` to load, with its dependencies (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./vmtest (in tools/) -kernel %s [flags] -- GUESTCMD [ARGS...]\n", strings.Join(kernelNames(), "|"))
		flag.PrintDefaults()
	}
	flag.Parse()

	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		return exitFailure
	}
	spec, ok := kernels[*kernelName]
	if !ok {
		flag.Usage()
		return fail(fmt.Errorf("-kernel must be one of %s", strings.Join(kernelNames(), ", ")))
	}
	if flag.NArg() == 0 {
		flag.Usage()
		return fail(errors.New("no guest command given (after --)"))
	}
	logf := func(format string, args ...any) {
		if *verbose {
			fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...)
		}
	}

	// Check the host tools before any download, so a missing package is
	// the first and only thing the user hears about.
	qemuBin, qemuPkg := spec.qemu()
	qemu, err := exec.LookPath(qemuBin)
	if err != nil {
		return fail(fmt.Errorf("%s not found: install package %s (apt-get install %s)", qemuBin, qemuPkg, qemuPkg))
	}
	if _, err := findBusybox(); err != nil {
		return fail(err)
	}

	var guestFiles []guestFile
	for _, f := range files {
		gf, err := parseFileArg(f)
		if err != nil {
			return fail(err)
		}
		// Check now rather than after a kernel download.
		if _, err := os.Stat(gf.host); err != nil {
			return fail(fmt.Errorf("-file: %w", err))
		}
		guestFiles = append(guestFiles, gf)
	}

	for _, b := range hostBins {
		if spec.arch != hostArch() {
			return fail(fmt.Errorf("-hostbin %s: the host's programs cannot run in a %s guest", b, spec.arch))
		}
		if _, err := exec.LookPath(b); err != nil {
			return fail(fmt.Errorf("-hostbin: %w", err))
		}
	}

	if *cacheDir == "" {
		root, err := repoRoot()
		if err != nil {
			return fail(err)
		}
		*cacheDir = filepath.Join(root, ".cache", "vmtest")
	}

	start := time.Now()
	busybox, busyboxList, err := guestBusybox(spec.arch, *cacheDir, logf)
	if err != nil {
		return fail(err)
	}
	k, err := prepareKernel(spec, *cacheDir, logf)
	if err != nil {
		return fail(err)
	}
	tree, err := loadModuleTree(k.moduleDir())
	if err != nil {
		return fail(err)
	}
	warn := func(s string) { logf("%s", s) }
	mods, err := tree.Resolve(append(append([]string{}, defaultModules...), modules...), k.modCache, warn)
	if err != nil {
		return fail(err)
	}
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = moduleName(m)
	}
	logf("modules, in load order: %s", strings.Join(names, " "))

	arch, err := buildArchive(guestSpec{
		release:     spec.release(),
		config:      k.config,
		busybox:     busybox,
		busyboxList: busyboxList,
		modules:     mods,
		files:       guestFiles,
		hostBin:     hostBins,
		env:         env,
		cmd:         flag.Args(),
	})
	if err != nil {
		return fail(fmt.Errorf("build initramfs: %w", err))
	}
	tmp, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio.gz")
	if err := writeInitramfs(initrd, arch); err != nil {
		return fail(err)
	}
	logf("prepared in %v", time.Since(start).Round(time.Millisecond))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	boot := time.Now()
	code, err := runQEMU(ctx, qemu, qemuArgs(spec.arch, k.vmlinux, initrd, *verbose), *timeout, *verbose, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %s: %v\n", *kernelName, err)
		if errors.Is(err, errTimeout) {
			return exitTimeout
		}
		return exitFailure
	}
	fmt.Fprintf(os.Stderr, "vmtest: kernel %s (%s): %s exited with %d after %v (boot+run)\n",
		*kernelName, spec.release(), flag.Arg(0), code, time.Since(boot).Round(100*time.Millisecond))
	return code
}

// findBusybox returns the static busybox of the busybox-static package.
func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p, checkBusybox(p)
		}
	}
	return "", errors.New("busybox not found: install package busybox-static (apt-get install busybox-static)")
}

// repoRoot finds the repository's root: the outermost folder with a
// go.mod (tools/ is a module of its own inside it), so the default cache
// is the same wherever in the tree vmtest is run.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	root := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			root = d
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if root == "" {
		return "", fmt.Errorf("find repository root: no go.mod above %s; pass -cache", dir)
	}
	return root, nil
}

// writeInitramfs writes the archive as gzip-compressed cpio, the format
// every kernel config here can unpack (CONFIG_RD_GZIP). BestSpeed: the
// archive is made anew for every run and mostly holds test binaries.
func writeInitramfs(p string, a *archive) error {
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if _, err := a.WriteTo(zw); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}
