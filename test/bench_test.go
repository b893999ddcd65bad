package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// benchReport is the part of packdir-bench's --json report the smoke test
// checks.
type benchReport struct {
	Phases []struct {
		Name            string
		Native, Packdir benchResult
		Ratio           float64
	}
	Space map[string]struct {
		Blocks512 int64 `json:"blocks_512"`
		Inodes    int
	}
	Scale *struct {
		Native, Packdir struct {
			Deliver           benchResult
			ScanFullWarm      benchResult `json:"scan_full_warm"`
			PerEntryRatioWarm float64     `json:"per_entry_ratio_warm"`
			RSSFull           int64       `json:"rss_full_bytes"`
		}
	}
	RSS    int64 `json:"packdir_rss_bytes"`
	Anon   int64 `json:"packdir_anon_bytes"`
	Wakeup struct {
		CrossCPU float64 `json:"cross_cpu_p50_us"`
		SameCPU  float64 `json:"same_cpu_p50_us"`
	}
}

type benchResult struct {
	Ops       int
	Bytes     int64
	Seconds   float64
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
}

// benchPhases are the phases a run as root must report, in order.
var benchPhases = []string{"deliver-1", "deliver-8", "deliver-link", "scan-cold", "headers-cold", "read-cold",
	"walk-cold", "scan-warm", "headers-warm", "read-warm", "walk-warm", "flag", "move", "unlink"}

// TestBenchQuick runs the benchmark tiny (scripts/bench --quick, with a
// small scale phase) against the built binary, and checks that it reports
// every phase for both targets with numbers a real run produces: every op
// counted, time spent, latencies ordered, space used, a daemon RSS. It
// makes no claim about speed.
func TestBenchQuick(t *testing.T) {
	harness.RequireFuse(t)
	harness.RequireRoot(t)
	bin := buildBench(t)
	work := t.TempDir()
	t.Cleanup(func() { checkNoMountsUnder(t, work) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--quick", "--json", "--scale", "1", "--packdir", harness.Binary(t), "--dir", work)
	// On a timeout it gets SIGTERM, on which it unmounts and ends its daemon.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("packdir-bench: %v\n%s", err, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("packdir-bench --json: %v\n%s", err, out)
	}
	checkBenchPhases(t, rep)
	checkBenchSpace(t, rep)
	if w := rep.Wakeup; w.SameCPU <= 0 || (runtime.NumCPU() > 1) != (w.CrossCPU > 0) {
		t.Errorf("wakeup round trips: %+v on %d CPUs; want the same-CPU figure, and the cross-CPU one with 2 CPUs or more", w, runtime.NumCPU())
	}
	if rep.Scale == nil {
		t.Fatal("no scale report with --scale")
	}
	for name, r := range map[string]benchResult{"native": rep.Scale.Native.Deliver, "packdir": rep.Scale.Packdir.Deliver} {
		if r.Ops != 400 || r.OpsPerSec <= 0 {
			t.Errorf("scale deliver on %s: %d ops at %.0f/s, want 400 ops", name, r.Ops, r.OpsPerSec)
		}
	}
	if s := rep.Scale.Packdir; s.ScanFullWarm.Ops != 400 || s.PerEntryRatioWarm <= 0 || s.RSSFull <= 0 {
		t.Errorf("scale scan on packdir: %d entries, per-entry ratio %.2f, RSS %d; want 400 entries and positive numbers",
			s.ScanFullWarm.Ops, s.PerEntryRatioWarm, s.RSSFull)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("packdir-bench left %d entries in its --dir", len(entries))
	}
}

func checkBenchPhases(t *testing.T, rep benchReport) {
	t.Helper()
	var names []string
	for _, p := range rep.Phases {
		names = append(names, p.Name)
		for target, r := range map[string]benchResult{"native": p.Native, "packdir": p.Packdir} {
			if r.Ops <= 0 || r.Seconds <= 0 || r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us {
				t.Errorf("phase %s on %s: %+v; want ops, seconds, ops/s and p50 > 0, p99 >= p50", p.Name, target, r)
			}
		}
		if p.Native.Ops != p.Packdir.Ops || p.Ratio <= 0 {
			t.Errorf("phase %s: native %d ops, packdir %d, ratio %.2f; want the same work and a ratio", p.Name, p.Native.Ops, p.Packdir.Ops, p.Ratio)
		}
		if strings.HasPrefix(p.Name, "read") && p.Packdir.Bytes != p.Native.Bytes {
			t.Errorf("phase %s: packdir read %d bytes, native %d", p.Name, p.Packdir.Bytes, p.Native.Bytes)
		}
	}
	if strings.Join(names, " ") != strings.Join(benchPhases, " ") {
		t.Errorf("phases %v, want %v", names, benchPhases)
	}
}

func checkBenchSpace(t *testing.T, rep benchReport) {
	t.Helper()
	for _, target := range []string{"native", "packdir"} {
		if sp := rep.Space[target]; sp.Blocks512 <= 0 || sp.Inodes <= 0 {
			t.Errorf("space of %s: %+v, want blocks and inodes used", target, sp)
		}
	}
	if rep.RSS <= 0 || rep.Anon <= 0 || rep.Anon > rep.RSS {
		t.Errorf("packdir daemon RSS %d, anonymous %d; want 0 < anonymous <= RSS", rep.RSS, rep.Anon)
	}
}

// buildBench builds cmd/packdir-bench into the test's temporary directory.
func buildBench(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "packdir-bench")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/packdir-bench")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/packdir-bench: %v\n%s", err, out)
	}
	return bin
}

// checkNoMountsUnder fails the test if a FUSE mount is left below dir,
// and detaches it.
func checkNoMountsUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	entries, err := harness.ParseMountinfo(f)
	if err != nil {
		t.Error(err)
		return
	}
	for _, e := range entries {
		if e.IsFuse() && strings.HasPrefix(e.MountPoint, dir+"/") {
			t.Errorf("mount left behind by packdir-bench: %s", e.MountPoint)
			syscall.Unmount(e.MountPoint, syscall.MNT_DETACH)
		}
	}
}
