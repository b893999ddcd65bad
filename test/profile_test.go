package test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestMountProfiling mounts with --pprof and --cpuprofile: the pprof
// endpoints answer on the loopback address while the mount serves, and
// the CPU profile is a gzipped pprof file once the daemon has stopped.
func TestMountProfiling(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	addr := freeLoopbackAddr(t)
	m := harness.Start(t, store, mnt, "--user", "prof", "--pprof", addr, "--cpuprofile", prof)
	if err := os.WriteFile(filepath.Join(mnt, "tmp", "x"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatalf("pprof endpoint: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Errorf("GET /debug/pprof/heap: %s\n%.200s", resp.Status, body)
	}
	m.Stop(t)
	data, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		t.Errorf("--cpuprofile wrote %d bytes that are not a gzipped profile", len(data))
	}
}

// TestMountPprofLoopbackOnly refuses to serve pprof beyond the loopback.
func TestMountPprofLoopbackOnly(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	_, stderr, code := harness.RunExit(t, "mount", "--pprof", "0.0.0.0:6060", store, t.TempDir())
	if code != 2 || !strings.Contains(stderr, "loopback") {
		t.Errorf("mount --pprof 0.0.0.0:6060: exit %d, stderr %q; want a usage error (2) about loopback", code, stderr)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
