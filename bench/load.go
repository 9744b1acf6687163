// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Load modes.
const (
	modeEstablished = "established" // a listener that accepts and closes
	modeRefused     = "refused"     // a closed port: the kernel answers RST
)

// loadSpec is one run of the load generator.
type loadSpec struct {
	mode string
	conc int
	// The run ends after dur, or after count attempts when count > 0.
	dur   time.Duration
	count int
}

// loadResult is what one run made, measured in the generator.
type loadResult struct {
	Attempts int           `json:"attempts"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Rate     float64       `json:"connects_per_s"`
	P50us    float64       `json:"p50_us"`
	P99us    float64       `json:"p99_us"`
	// Errors are connect() results other than the mode's expected one.
	Errors map[string]int `json:"errors,omitempty"`
	// CaptureDrops are SYNs the refused-mode capture lost (then the
	// attempts' ports are incomplete and matching is not exact).
	CaptureDrops uint32 `json:"capture_drops,omitempty"`

	ports  map[portKey]int
	dports map[uint16]bool
}

// target is one destination of the load.
type target struct {
	family int
	sa     unix.Sockaddr
	port   uint16
	fd     int // the listener, or the bound, non-listening socket
}

// openTarget makes a destination on the loopback address of family: a
// listener, or, for refused, a socket bound to a port but not listening,
// so that the port is ours (nobody else can listen on it meanwhile) and a
// SYN to it is answered with a RST.
func openTarget(family int, listen bool) (*target, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	} else {
		sa = &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	if listen {
		if err := unix.Listen(fd, 4096); err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	t := &target{family: family, fd: fd}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		t.port = uint16(a.Port)
		t.sa = &unix.SockaddrInet4{Addr: a.Addr, Port: a.Port}
	case *unix.SockaddrInet6:
		t.port = uint16(a.Port)
		t.sa = &unix.SockaddrInet6{Addr: a.Addr, Port: a.Port}
	}
	return t, nil
}

// acceptLoop accepts and closes until the listener is shut down. It runs
// on a thread of its own in blocking accept(), as a simple C server would.
func acceptLoop(fd int, wg *sync.WaitGroup) {
	defer wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			return // EINVAL after shutdown: the run is over
		}
		_ = unix.Close(nfd)
	}
}

// connector results, one per goroutine, merged after the run.
type connResult struct {
	ports  map[portKey]int
	lat    []int64
	errors map[string]int
}

// runLoad runs one load: conc connectors, each on its own OS thread doing
// blocking connect() as a C client would, alternating IPv4 and IPv6 so
// that both address families are in every run.
func runLoad(spec loadSpec) (*loadResult, error) {
	listen := spec.mode == modeEstablished
	t4, err := openTarget(unix.AF_INET, listen)
	if err != nil {
		return nil, fmt.Errorf("opening the IPv4 target: %w", err)
	}
	defer unix.Close(t4.fd)
	t6, err := openTarget(unix.AF_INET6, listen)
	if err != nil {
		return nil, fmt.Errorf("opening the IPv6 target: %w", err)
	}
	defer unix.Close(t6.fd)
	targets := [2]*target{t4, t6}
	dports := map[uint16]bool{t4.port: true, t6.port: true}

	var acceptWG sync.WaitGroup
	if listen {
		for _, t := range targets {
			acceptWG.Add(1)
			go acceptLoop(t.fd, &acceptWG)
		}
	}
	var capture *synCapture
	if !listen {
		if capture, err = startSYNCapture(dports); err != nil {
			return nil, err
		}
	}

	// Every connector needs a P between its syscalls; with one P per
	// thread, none waits for the scheduler to hand one over, which a C
	// program's threads would not either.
	prev := runtime.GOMAXPROCS(spec.conc + 4)
	defer runtime.GOMAXPROCS(prev)

	var (
		remaining atomic.Int64
		wg        sync.WaitGroup
		start     = make(chan struct{})
		results   = make([]connResult, spec.conc)
	)
	remaining.Store(int64(spec.count))
	deadline := time.Time{}
	for i := range spec.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-start
			results[i] = connectLoop(spec, i, targets, &deadline, &remaining)
		}()
	}
	// Let every connector reach its thread before the clock starts.
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	deadline = t0.Add(spec.dur)
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)

	if listen {
		for _, t := range targets {
			// shutdown, unlike close, wakes a thread blocked in accept().
			_ = unix.Shutdown(t.fd, unix.SHUT_RDWR)
		}
		acceptWG.Wait()
	}

	res := &loadResult{Elapsed: elapsed, Errors: map[string]int{}, ports: map[portKey]int{}, dports: dports}
	var lat []int64
	for _, r := range results {
		lat = append(lat, r.lat...)
		for k, n := range r.ports {
			res.ports[k] += n
		}
		for k, n := range r.errors {
			res.Errors[k] += n
		}
	}
	if capture != nil {
		ports, drops, err := capture.stopAndWait()
		if err != nil {
			return nil, err
		}
		res.ports, res.CaptureDrops = ports, drops
	}
	slices.Sort(lat)
	res.Attempts = len(lat)
	res.Rate = float64(len(lat)) / elapsed.Seconds()
	res.P50us = float64(percentile(lat, 50)) / 1e3
	res.P99us = float64(percentile(lat, 99)) / 1e3
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	return res, nil
}

// connectLoop is one connector. The deadline is written before start is
// closed, so reading it here is ordered after the write.
func connectLoop(spec loadSpec, id int, targets [2]*target, deadline *time.Time, remaining *atomic.Int64) connResult {
	r := connResult{ports: make(map[portKey]int), errors: make(map[string]int)}
	r.lat = make([]int64, 0, 1<<16)
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	end := *deadline
	for j := 0; ; j++ {
		if spec.count > 0 {
			if remaining.Add(-1) < 0 {
				break
			}
		}
		t := targets[(id+j)&1]
		fd, err := unix.Socket(t.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			r.errors["socket: "+errName(err)]++
			continue
		}
		t0 := time.Now()
		err = unix.Connect(fd, t.sa)
		t1 := time.Now()
		r.lat = append(r.lat, t1.Sub(t0).Nanoseconds())
		switch {
		case spec.mode == modeEstablished && err == nil:
			if sa, gerr := unix.Getsockname(fd); gerr == nil {
				r.ports[portKey{sockPort(sa), t.port}]++
			} else {
				r.errors["getsockname: "+errName(gerr)]++
			}
			// A RST instead of a FIN leaves no TIME_WAIT behind, so the
			// 28k ephemeral ports last for any run length.
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
		case spec.mode == modeRefused && errors.Is(err, unix.ECONNREFUSED):
			// The port comes from the SYN capture.
		default:
			r.errors["connect: "+errName(err)]++
		}
		_ = unix.Close(fd)
		if spec.count == 0 && t1.After(end) {
			break
		}
	}
	return r
}

func sockPort(sa unix.Sockaddr) uint16 {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port)
	case *unix.SockaddrInet6:
		return uint16(a.Port)
	}
	return 0
}

func errName(err error) string {
	if err == nil {
		return "success"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
	}
	return err.Error()
}

// connectOnce makes one established connection to t and returns its
// source port; the idle-latency test uses it.
func connectOnce(t *target) (uint16, error) {
	fd, err := unix.Socket(t.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, t.sa); err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("getsockname: %w", err)
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return sockPort(sa), nil
}
