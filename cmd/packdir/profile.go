package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	runpprof "runtime/pprof"

	"github.com/urfave/cli/v2"
)

func profileFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pprof", Usage: "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)"},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the whole mount to this file"},
	}
}

// startProfiling starts what --pprof and --cpuprofile ask for and returns
// the function that ends it, to be called after unmounting.
func startProfiling(c *cli.Context, log *slog.Logger) (func(), error) {
	stopCPU, err := startCPUProfile(c.String("cpuprofile"))
	if err != nil {
		return nil, err
	}
	if addr := c.String("pprof"); addr != "" {
		if err := servePprof(addr, log); err != nil {
			stopCPU()
			return nil, err
		}
	}
	return stopCPU, nil
}

func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := runpprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		runpprof.StopCPUProfile()
		f.Close()
	}, nil
}

// checkPprofAddr refuses an address for --pprof that is not loopback; ""
// (no --pprof) is fine. mount checks it with the rest of its command line,
// before the store is opened.
func checkPprofAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--pprof %s: %v", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usagef("--pprof %s: give a loopback address such as 127.0.0.1:6060", addr)
	}
	return nil
}

// servePprof serves the profiling endpoints on a loopback address only:
// they show the daemon's memory, which holds mail.
func servePprof(addr string, log *slog.Logger) error {
	if err := checkPprofAddr(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving pprof", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	go func() {
		if err := http.Serve(ln, mux); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("pprof server", "err", err)
		}
	}()
	return nil
}
