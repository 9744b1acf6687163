// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// qemuArgs builds QEMU's command line. TCG, not KVM: /dev/kvm on these
// machines is a nested device that QEMU cannot use. The ELF vmlinux is
// booted directly, skipping the slow in-guest decompressor. No NIC: the
// guest needs only loopback and the veth pairs that tests make.
//
// thread=single: TCG runs both vCPUs in one host thread, taking turns.
// With the default multi-threaded TCG (QEMU 7.2), a vCPU can execute a
// stale int3 after the kernel has finished live-patching that spot
// (text_poke_bp, used whenever a tracepoint's static key flips, i.e. at
// every attach and detach of tracer's syscall tracepoints): the guest dies
// with "Oops: int3" in syscall_trace_enter or
// syscall_exit_to_user_mode_prepare and "Kernel panic - not syncing".
// Seen within a few seconds of attach/detach loops on 6.12; never in 120
// loops with thread=single. It also leaves a host core to others.
//
// arm64: the "virt" machine, whose serial port is a PL011 (ttyAMA0); the
// kernel is Debian's uncompressed Image, and poweroff goes through PSCI.
// thread=single there too: the same text patching happens on arm64.
func qemuArgs(arch, vmlinux, initrd string, verbose bool) []string {
	console := "ttyS0"
	var machine []string
	if arch == "arm64" {
		console = "ttyAMA0"
		machine = []string{"-M", "virt"}
	}
	cmdline := "console=" + console + " panic=-1"
	if !verbose {
		cmdline += " quiet"
	}
	return append(machine,
		"-no-reboot", "-nographic", "-nic", "none",
		"-m", "1G", "-smp", "2",
		"-accel", "tcg,thread=single", "-cpu", "max",
		"-kernel", vmlinux,
		"-initrd", initrd,
		"-append", cmdline,
	)
}

// parseMarker reports the exit status if line is the guest's exit marker.
// Carriage returns (the serial tty turns "\n" into "\r\n") and blanks
// around it are ignored.
func parseMarker(line string) (int, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), exitMarker)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n > 255 {
		return 0, false
	}
	return n, true
}

// console copies the guest's console output to out, line by line and
// without carriage returns (the serial tty turns "\n" into "\r\n").
//
// Output before /init's start marker is firmware and kernel boot noise:
// SeaBIOS even sends terminal control codes that clear the screen. It is
// kept back (the last lines of it are shown if the guest never gets to
// /init) unless verbose, and then printed without control codes. The exit
// marker is recorded, not printed; in quiet mode, so is what follows it
// (the kernel's power-off message).
type console struct {
	out     io.Writer
	verbose bool
	onExit  func() // called once when the exit marker is seen

	started      bool
	found        bool
	code         int
	early        []string // last lines before the start marker
	pendingBlank bool     // a blank line held back: it may precede the marker
}

const maxEarlyLines = 200

func (c *console) copy(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if werr := c.line(strings.ReplaceAll(line, "\r", "")); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *console) line(line string) error {
	switch {
	case !c.started:
		if strings.TrimSpace(line) == startMarker {
			c.started = true
			return nil
		}
		line = stripControl(line)
		if c.verbose {
			_, err := io.WriteString(c.out, line)
			return err
		}
		if len(c.early) == maxEarlyLines {
			c.early = c.early[1:]
		}
		c.early = append(c.early, line)
		return nil
	case !c.found:
		if code, ok := parseMarker(line); ok {
			// The blank line before it came from the marker's own "\n".
			c.pendingBlank = false
			c.code, c.found = code, true
			if c.onExit != nil {
				c.onExit()
			}
			return nil
		}
		if c.pendingBlank {
			c.pendingBlank = false
			if _, err := io.WriteString(c.out, "\n"); err != nil {
				return err
			}
		}
		if line == "\n" {
			c.pendingBlank = true
			return nil
		}
	case !c.verbose:
		return nil
	}
	_, err := io.WriteString(c.out, line)
	return err
}

var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_a-z])`)

// stripControl removes terminal escape sequences from firmware output.
func stripControl(s string) string {
	return ansiEscape.ReplaceAllString(s, "")
}

// errTimeout marks a run that hit -timeout.
var errTimeout = errors.New("timeout")

// runQEMU boots the guest and returns the guest command's exit status.
func runQEMU(ctx context.Context, qemu string, args []string, timeout time.Duration, verbose bool, out io.Writer) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, qemu, args...)
	// QEMU's stdin stays /dev/null: it must not put the user's terminal
	// into raw mode or read keystrokes meant for the host shell.
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}

	con := &console{out: out, verbose: verbose}
	// After the marker the guest powers off at once; if QEMU should hang
	// anyway, the result is already known and must not wait for -timeout.
	var grace *time.Timer
	con.onExit = func() { grace = time.AfterFunc(30*time.Second, cancel) }
	copyErr := con.copy(stdout)
	waitErr := cmd.Wait()
	if grace != nil {
		grace.Stop()
	}

	if con.found {
		return con.code, nil
	}
	if !con.started && len(con.early) > 0 {
		fmt.Fprintf(out, "vmtest: the guest did not reach /init; its last console lines:\n%s", strings.Join(con.early, ""))
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return 0, fmt.Errorf("%w: the guest did not finish within %v", errTimeout, timeout)
	}
	if ctx.Err() != nil {
		return 0, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if copyErr != nil {
		return 0, fmt.Errorf("read guest console: %w", copyErr)
	}
	if waitErr != nil {
		return 0, fmt.Errorf("qemu failed: %w", waitErr)
	}
	return 0, fmt.Errorf("the guest stopped without reporting an exit status (no %s line: kernel panic, or /init died?)", exitMarker)
}
