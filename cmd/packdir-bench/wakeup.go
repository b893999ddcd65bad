package main

import (
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// wakeup is what waking a thread asleep in read(2) and getting its answer
// costs on this machine, the floor under every FUSE request: the kernel
// wakes a daemon thread, which answers and wakes the caller. Between two
// CPUs of a virtual machine each wakeup is an interrupt between virtual
// CPUs; on one CPU it is a context switch.
type wakeup struct {
	CrossCPUP50us float64 `json:"cross_cpu_p50_us"` // 0 on a machine with one CPU
	SameCPUP50us  float64 `json:"same_cpu_p50_us"`
}

const wakeupRounds = 20000

// measureWakeup times pipe round trips to a thread on another CPU, then
// on the same CPU.
func measureWakeup() (wakeup, error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return wakeup{}, err
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	var w wakeup
	var err error
	if len(cpus) == 2 {
		if w.CrossCPUP50us, err = pingPong(cpus[0], cpus[1], &all); err != nil {
			return w, err
		}
	}
	w.SameCPUP50us, err = pingPong(cpus[0], cpus[0], &all)
	return w, err
}

// pingPong returns the median round trip, in µs, of one byte sent over a
// pipe to a thread on CPU b and back to a thread on CPU a. Both threads
// get the affinity all back afterwards.
func pingPong(a, b int, all *unix.CPUSet) (float64, error) {
	// The echo thread owns the read end of req and the write end of resp,
	// this one the others; each closes its own, so that either side sees
	// end of file if the other fails.
	var req, resp [2]int
	if err := syscall.Pipe(req[:]); err != nil {
		return 0, err
	}
	if err := syscall.Pipe(resp[:]); err != nil {
		syscall.Close(req[0])
		syscall.Close(req[1])
		return 0, err
	}
	defer func() {
		if req[1] >= 0 {
			syscall.Close(req[1])
		}
		syscall.Close(resp[0])
	}()
	echoed := make(chan error, 1)
	go func() {
		defer syscall.Close(req[0])
		defer syscall.Close(resp[1])
		echoed <- onCPU(b, all, func() error {
			buf := make([]byte, 1)
			for {
				if n, err := syscall.Read(req[0], buf); err != nil || n == 0 {
					return err // n == 0: the other side gave up
				}
				if _, err := syscall.Write(resp[1], buf); err != nil {
					return err
				}
				if buf[0] == 1 {
					return nil
				}
			}
		})
	}()
	lat := make([]time.Duration, 0, wakeupRounds)
	err := onCPU(a, all, func() error {
		buf := []byte{0}
		for i := 0; i < wakeupRounds; i++ {
			if i == wakeupRounds-1 {
				buf[0] = 1 // the last one ends the echo
			}
			start := time.Now()
			if _, err := syscall.Write(req[1], buf); err != nil {
				return err
			}
			if n, err := syscall.Read(resp[0], buf); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("the echo thread stopped")
			}
			lat = append(lat, time.Since(start))
		}
		return nil
	})
	if err != nil {
		syscall.Close(req[1]) // so that the echo thread ends
		req[1] = -1
	}
	if eerr := <-echoed; err == nil {
		err = eerr
	}
	if err != nil {
		return 0, fmt.Errorf("wakeup round trips: %w", err)
	}
	slices.Sort(lat)
	return float64(lat[len(lat)/2].Nanoseconds()) / 1e3, nil
}

// onCPU runs fn on a thread bound to cpu, and unbinds the thread after.
func onCPU(cpu int, all *unix.CPUSet, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return err
	}
	defer unix.SchedSetaffinity(0, all)
	return fn()
}
