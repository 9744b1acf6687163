// SPDX-License-Identifier: Apache-2.0

package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed tcpconnect.bt
var btScript []byte

const tracefsDir = "/sys/kernel/tracing"

// setupBpftrace checks that the bpftrace reference can run here: bpftrace
// is installed, tracefs is there (bpftrace reads tracepoint formats from
// it; it is mounted for the benchmark if needed and unmounted after), and
// the script attaches. The returned function undoes the mount.
func (b *bench) setupBpftrace(res *Results) (func(), error) {
	undo := func() {}
	if _, err := exec.LookPath("bpftrace"); err != nil {
		return undo, errors.New("bpftrace is not installed (apt-get install -y bpftrace)")
	}
	b.btScript = filepath.Join(b.tmp, "tcpconnect.bt")
	if err := os.WriteFile(b.btScript, btScript, 0o644); err != nil {
		return undo, fmt.Errorf("writing the bpftrace script: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tracefsDir, "events")); err != nil {
		if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
			return undo, fmt.Errorf("mounting tracefs for bpftrace: %w", err)
		}
		res.Machine.TracefsMounted = true
		undo = func() {
			if err := unix.Unmount(tracefsDir, 0); err != nil {
				b.logf("unmounting tracefs: %v", err)
			}
		}
	}
	// A trial run: the reasons bpftrace cannot attach come out here.
	c := tracerConfig{Name: "bpftrace", parse: parseBpftrace, bpftrace: true}
	out, err := os.Create(filepath.Join(b.tmp, "bpftrace-trial.out"))
	if err != nil {
		undo()
		return func() {}, fmt.Errorf("creating the trial output: %w", err)
	}
	defer out.Close()
	p, err := startTracer(c, b.argv(c), out)
	if err != nil {
		undo()
		return func() {}, err
	}
	_, aerr := p.waitAttached(30 * time.Second)
	st, serr := p.stop(10 * time.Second)
	if aerr != nil || serr != nil || st.exitCode != 0 {
		undo()
		return func() {}, fmt.Errorf("bpftrace cannot run the reference script here: %v %v exit %d: %s",
			aerr, serr, st.exitCode, strings.Join(st.stderr, " | "))
	}
	return undo, nil
}
