// SPDX-License-Identifier: Apache-2.0

// Package bystander measures what a tracer costs processes that never
// connect: the time of a getppid() call, and the round trips per second
// of one established loopback TCP connection doing 1-byte
// request/response. A tracer that hooks a syscall tracepoint puts every
// task of the host on the kernel's slow syscall path
// (TIF_SYSCALL_TRACEPOINT), and both numbers show it.
//
// Only the standard library and x/sys: the same code runs in the
// benchmark and in the small static binary that measures inside the QEMU
// guests (cmd/), where only ratios mean anything.
package bystander

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sample is one measurement.
type Sample struct {
	GetppidNs float64 // ns per getppid() call (fastest batches)
	RRPerSec  float64 // round trips per second of the connection (fastest batches)
}

// Conn is one established loopback TCP connection whose server echoes
// every byte, both ends on one CPU. It is made once, before any tracer runs, so that measuring
// never connects.
type Conn struct {
	client, server int
	wg             sync.WaitGroup
}

// Dial makes the connection.
func Dial() (*Conn, error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	c := &Conn{client: -1, server: -1}
	c.client, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(c.client, sa); err != nil {
		unix.Close(c.client)
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.server, _, err = unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		unix.Close(c.client)
		return nil, fmt.Errorf("accept: %w", err)
	}
	for _, fd := range []int{c.client, c.server} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			c.Close()
			return nil, fmt.Errorf("TCP_NODELAY: %w", err)
		}
	}
	c.wg.Add(1)
	go c.echo()
	return c, nil
}

// echo answers each byte with one byte until the client closes.
func (c *Conn) echo() {
	defer c.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pinOneCPU()
	b := make([]byte, 1)
	for {
		n, err := unix.Read(c.server, b)
		if n != 1 || err != nil {
			return
		}
		if _, err := unix.Write(c.server, b); err != nil {
			return
		}
	}
}

// Close ends the connection and its server.
func (c *Conn) Close() error {
	if c.client >= 0 {
		unix.Shutdown(c.client, unix.SHUT_RDWR)
		unix.Close(c.client)
		c.client = -1
	}
	c.wg.Wait()
	if c.server >= 0 {
		unix.Close(c.server)
		c.server = -1
	}
	return nil
}

// Timed batches: small enough that many fit in a sample, large enough
// that reading the clock costs nothing next to them.
const (
	getppidBatch = 2000
	rrBatch      = 200
)

// Both measures are taken in many short batches and summarized by a fast
// percentile: what another process, an interrupt or (in a QEMU guest) the
// host's scheduler adds to a batch only ever slows it, so the fastest
// batches show the cost of the path itself, which is what a tracer
// changes (a syscall tracepoint adds to every call, not to some).
const (
	fastPercentile = 0.10
)

// RoundTrips sends one byte and waits for the answer, in batches, for d,
// and returns the round trips per second of the fastest batches.
func (c *Conn) RoundTrips(d time.Duration) (float64, error) {
	runtime.LockOSThread()
	// The thread stays pinned: it is not returned to Go's pool.
	pinOneCPU()
	b := []byte{'x'}
	var per []float64 // ns per round trip, per batch
	end := time.Now().Add(d)
	for time.Now().Before(end) || len(per) < 5 {
		t0 := time.Now()
		for range rrBatch {
			if _, err := unix.Write(c.client, b); err != nil {
				return 0, fmt.Errorf("write: %w", err)
			}
			m, err := unix.Read(c.client, b)
			if err != nil {
				return 0, fmt.Errorf("read: %w", err)
			}
			if m != 1 {
				return 0, errors.New("read: connection closed")
			}
		}
		per = append(per, float64(time.Since(t0).Nanoseconds())/rrBatch)
	}
	return 1e9 / fast(per), nil
}

// Getppid calls getppid() in batches for d and returns the ns per call
// of the fastest batches.
func Getppid(d time.Duration) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var per []float64
	end := time.Now().Add(d)
	for time.Now().Before(end) || len(per) < 5 {
		t0 := time.Now()
		for range getppidBatch {
			unix.Getppid()
		}
		per = append(per, float64(time.Since(t0).Nanoseconds())/getppidBatch)
	}
	return fast(per)
}

// pinOneCPU keeps the calling thread on the last CPU. Both ends of the
// connection run there, so a round trip is two wakeups on one CPU: cross-
// CPU wakeups (IPIs) would add a variance, large in a VM and worse under
// QEMU's TCG, that has nothing to do with the tracer.
func pinOneCPU() {
	var set unix.CPUSet
	set.Set(runtime.NumCPU() - 1)
	_ = unix.SchedSetaffinity(0, &set)
}

// fast returns the fastPercentile of per-batch times.
func fast(per []float64) float64 {
	slices.Sort(per)
	return per[int(float64(len(per)-1)*fastPercentile)]
}

// Measure takes one sample: getppid() for d, then round trips for 2d.
func (c *Conn) Measure(d time.Duration) (Sample, error) {
	s := Sample{GetppidNs: Getppid(d)}
	var err error
	s.RRPerSec, err = c.RoundTrips(2 * d)
	return s, err
}
