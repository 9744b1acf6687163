// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// defaultModules are the loadable modules that the project's network tests
// may need. Debian's kernels build them as modules (other kernels may
// build them in, or lack netem), and the guest has no modprobe/udev to
// load them on demand.
var defaultModules = []string{
	"veth",
	"sch_netem",
	"nf_tables",
	"nft_reject",
	"nft_reject_inet",
	"nft_reject_ipv4",
	"nft_reject_ipv6",
	"nf_reject_ipv4",
	"nf_reject_ipv6",
	"nft_limit",
	"nft_quota",
}

// softdepAliases maps softdep names that are module aliases rather than
// module names to a module that provides them. Resolving aliases in
// general would mean reading the modinfo of every module of the kernel
// (thousands, xz-compressed on 6.12); the few that our modules name are
// listed here instead. libcrc32c (needed by nf_tables) fails to load
// without a crc32c implementation, and the request_module() it would
// otherwise trigger has no modprobe to call in the guest.
var softdepAliases = map[string]string{
	"crc32c": "crc32c_generic",
}

// moduleName gives the kernel's name of a module file: the file name
// without .ko and compression suffix, with dashes turned into underscores
// as the kernel does.
func moduleName(file string) string {
	base := filepath.Base(file)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, suf)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// modinfo is what the resolver needs from a module's .modinfo section.
type modinfo struct {
	depends []string // hard dependencies: must be loaded first
	softPre []string // "softdep=pre:" names: modprobe loads them first
}

// parseModinfo parses the NUL-separated key=value strings of a module's
// .modinfo ELF section.
func parseModinfo(sec []byte) modinfo {
	var mi modinfo
	for _, kv := range bytes.Split(sec, []byte{0}) {
		key, val, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(val, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, strings.ReplaceAll(d, "-", "_"))
				}
			}
		case "softdep":
			// Format: "pre: a b post: c".
			pre := false
			for _, f := range strings.Fields(val) {
				switch f {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						mi.softPre = append(mi.softPre, strings.ReplaceAll(f, "-", "_"))
					}
				}
			}
		}
	}
	return mi
}

// readModinfo reads the .modinfo section of an uncompressed module file.
func readModinfo(path string) (modinfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		return modinfo{}, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, fmt.Errorf("read module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("read module %s: %w", path, err)
	}
	return parseModinfo(data), nil
}

// moduleTree indexes the modules of an unpacked kernel package. The
// package ships no modules.dep (depmod runs at install time), so the
// dependencies are read from each module's own modinfo instead.
type moduleTree struct {
	dir     string            // .../lib/modules/<version>
	files   map[string]string // module name -> path relative to dir
	builtin map[string]bool   // modules built into the kernel image
}

func loadModuleTree(dir string) (*moduleTree, error) {
	t := &moduleTree{dir: dir, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		t.files[moduleName(p)] = rel
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("index modules: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			t.builtin[moduleName(line)] = true
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("index modules: %w", err)
	}
	return t, nil
}

// errNoModule is returned by a resolver's lookup for an unknown module.
var errNoModule = errors.New("no such module")

// resolveModules returns the modules to load, dependencies first, for the
// wanted names. Built-in modules are left out. info returns the modinfo
// of a loadable module or an error wrapping errNoModule. Soft
// dependencies are followed when they can be found and skipped (with a
// note through warn) when not, as modprobe does.
func resolveModules(want []string, builtin func(string) bool, info func(string) (modinfo, error), warn func(string)) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, soft bool, from string) error
	visit = func(name string, soft bool, from string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if soft {
			if alias, ok := softdepAliases[name]; ok {
				name = alias
			}
		}
		if builtin(name) {
			return nil
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle through %s", name)
		}
		mi, err := info(name)
		if err != nil {
			if soft && errors.Is(err, errNoModule) {
				warn(fmt.Sprintf("soft dependency %s of %s not found, skipped", name, from))
				return nil
			}
			if from != "" {
				return fmt.Errorf("%s (needed by %s): %w", name, from, err)
			}
			return err
		}
		state[name] = visiting
		for _, d := range mi.softPre {
			if err := visit(d, true, name); err != nil {
				return err
			}
		}
		for _, d := range mi.depends {
			if err := visit(d, false, name); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, w := range want {
		if err := visit(w, false, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// uncompressedModule returns the path of an uncompressed copy of module
// name, decompressing it into cacheDir once: busybox insmod cannot read
// .ko.xz or .ko.zst files.
func (t *moduleTree) uncompressedModule(name, cacheDir string) (string, error) {
	rel, ok := t.files[name]
	if !ok {
		return "", fmt.Errorf("module %s: %w in %s", name, errNoModule, t.dir)
	}
	src := filepath.Join(t.dir, rel)
	if strings.HasSuffix(rel, ".ko") {
		return src, nil
	}
	dst := filepath.Join(cacheDir, name+".ko")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	data, err := decompressFile(src)
	if err != nil {
		return "", fmt.Errorf("module %s: %w", name, err)
	}
	if err := writeFileAtomic(dst, data, 0o644); err != nil {
		return "", fmt.Errorf("module %s: %w", name, err)
	}
	return dst, nil
}

// Resolve returns the uncompressed module files to load, in order.
func (t *moduleTree) Resolve(want []string, cacheDir string, warn func(string)) ([]string, error) {
	names, err := resolveModules(want,
		func(n string) bool { return t.builtin[n] },
		func(n string) (modinfo, error) {
			p, err := t.uncompressedModule(n, cacheDir)
			if err != nil {
				return modinfo{}, err
			}
			return readModinfo(p)
		}, warn)
	if err != nil {
		return nil, fmt.Errorf("resolve modules: %w", err)
	}
	paths := make([]string, len(names))
	for i, n := range names {
		if paths[i], err = t.uncompressedModule(n, cacheDir); err != nil {
			return nil, err
		}
	}
	return paths, nil
}
