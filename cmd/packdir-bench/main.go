// Command packdir-bench runs the same Maildir workload on a native Maildir
// directory and on a packdir mount on the same disk, phase by phase,
// alternating between them, and prints per phase the ops/s, MB/s and
// p50/p99 latency of each and the ratio packdir/native. scripts/bench
// builds and runs it; see the README's "Performance" section.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

type config struct {
	Packdir   string   `json:"-"`
	Dir       string   `json:"dir"`
	Messages  int      `json:"messages"`
	Seed      uint64   `json:"seed"`
	Writers   int      `json:"writers"`
	Cold      bool     `json:"cold"`
	Scale     int      `json:"scale,omitempty"`
	ScaleBase int      `json:"scale_base,omitempty"`
	MountArgs []string `json:"mount_args,omitempty"`
	JSON      bool     `json:"-"`
	Keep      bool     `json:"-"`
}

// report is the whole run, as --json prints it.
type report struct {
	Config config           `json:"config"`
	Phases []phaseResult    `json:"phases"`
	Space  map[string]space `json:"space"`
	Scale  *scaleReport     `json:"scale,omitempty"`
	// Wakeup is the floor under a FUSE request's latency on this machine.
	Wakeup wakeup `json:"wakeup"`
	// RSSBytes is the daemon's resident set size at the end of the run.
	RSSBytes int64 `json:"packdir_rss_bytes"`
	// AnonBytes is the part of it that is not mapped file pages.
	AnonBytes int64 `json:"packdir_anon_bytes"`
}

type phaseResult struct {
	Name    string `json:"name"`
	Native  result `json:"native"`
	Packdir result `json:"packdir"`
	// Ratio is packdir's ops/s over native's: above 1, packdir is faster.
	Ratio float64 `json:"ratio"`
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "packdir-bench:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "packdir-bench:", err)
		os.Exit(1)
	}
}

func parseFlags() (config, error) {
	var c config
	var quick bool
	var mountArgs string
	flag.StringVar(&c.Packdir, "packdir", "bin/packdir", "the packdir binary")
	flag.StringVar(&c.Dir, "dir", "", "work directory on the disk to measure (default: a new directory in /var/tmp)")
	flag.IntVar(&c.Messages, "messages", 20000, "messages delivered (half by 1 writer, half by --writers, plus a quarter by link+unlink)")
	flag.Uint64Var(&c.Seed, "seed", 1, "seed of the message generator")
	flag.IntVar(&c.Writers, "writers", 8, "parallel writers of the parallel delivery phase")
	flag.BoolVar(&c.Cold, "cold", os.Geteuid() == 0, "run the cold phases (drop caches; needs root)")
	flag.IntVar(&c.Scale, "scale", 0, "also deliver this many messages into one folder and compare readdir+stat with --scale-base")
	flag.IntVar(&c.ScaleBase, "scale-base", 100000, "folder size the --scale folder is compared with")
	flag.StringVar(&mountArgs, "mount-args", "", "extra arguments for packdir mount, space separated (e.g. \"--pprof 127.0.0.1:6060\")")
	flag.BoolVar(&quick, "quick", false, "a tiny run that proves the benchmark works (CI)")
	flag.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	flag.BoolVar(&c.Keep, "keep", false, "keep the work directory")
	flag.Parse()
	if flag.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if quick {
		c.Messages = 48
		if c.Scale > 0 {
			c.Scale, c.ScaleBase = 400, 100
		}
	}
	if c.Messages < 16 || c.Writers < 1 || c.Scale != 0 && c.Scale <= c.ScaleBase {
		return c, fmt.Errorf("need --messages >= 16, --writers >= 1, and --scale > --scale-base")
	}
	c.MountArgs = strings.Fields(mountArgs)
	abs, err := filepath.Abs(c.Packdir)
	c.Packdir = abs
	return c, err
}

func run(cfg config) (err error) {
	work, err := workDir(&cfg)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, w: &workload{gen: newCorpusGen(cfg.Seed)}}
	defer func() {
		if cerr := b.close(work); err == nil {
			err = cerr
		}
	}()
	go b.closeOnSignal(work)
	rep, err := b.run(work)
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(os.Stdout, rep)
	return nil
}

func workDir(cfg *config) (string, error) {
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "packdir-bench-")
		cfg.Dir = d
		return d, err
	}
	d, err := os.MkdirTemp(cfg.Dir, "packdir-bench-")
	if err != nil {
		return "", err
	}
	d, err = filepath.EvalSymlinks(d)
	return d, err
}

// bench holds a run's targets so that they are cleaned up on any exit.
type bench struct {
	cfg            config
	w              *workload
	native, packed *target
	closeOnce      sync.Once
	closeErr       error
}

func (b *bench) closeOnSignal(work string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(os.Stderr, "packdir-bench: interrupted; unmounting")
	b.close(work)
	os.Exit(130)
}

// close stops the daemon and removes the work directory, once, whether
// the run ended or was interrupted.
func (b *bench) close(work string) error {
	b.closeOnce.Do(func() { b.closeErr = b.closeNow(work) })
	return b.closeErr
}

func (b *bench) closeNow(work string) error {
	var err error
	if b.packed != nil {
		err = b.packed.unmount()
		b.packed.kill()
	}
	if !b.cfg.Keep {
		if rerr := os.RemoveAll(work); err == nil {
			err = rerr
		}
	} else {
		fmt.Fprintln(os.Stderr, "packdir-bench: kept", work)
	}
	return err
}
