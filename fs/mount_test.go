package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

// testMount is one mount of a store made for a test.
type testMount struct {
	mnt      string
	storeDir string
	store    *backend.Store
	fsys     *FS
	stopped  bool
}

// mounts remembers each test's mount so that remount can find it.
var (
	mountsMu sync.Mutex
	mounts   = map[testing.TB]*testMount{}
)

func mountOf(t testing.TB) *testMount {
	mountsMu.Lock()
	defer mountsMu.Unlock()
	return mounts[t]
}

// mountT creates a store in a temporary directory with user "alice" and
// mounts alice's tree on a temporary mountpoint. When the test ends it
// unmounts (failing the test if the mount is left behind), closes the
// store and runs the full consistency check on it.
func mountT(t testing.TB, opts ...Options) (string, *backend.Store) {
	t.Helper()
	return mountStore(t, t.TempDir(), opts...)
}

// mountStore is mountT with the store in storeDir, an empty directory.
func mountStore(t testing.TB, storeDir string, opts ...Options) (string, *backend.Store) {
	t.Helper()
	// A test that needs limits initialises storeDir itself.
	if !backend.Exists(storeDir) {
		if err := backend.Init(storeDir, backend.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := backend.Open(storeDir, backend.TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if _, err := AddUser(s, "alice", uid, gid); err != nil {
		s.Close()
		t.Fatal(err)
	}
	m := &testMount{mnt: t.TempDir(), storeDir: storeDir, store: s}
	mountsMu.Lock()
	mounts[t] = m
	mountsMu.Unlock()
	t.Cleanup(func() {
		mountsMu.Lock()
		delete(mounts, t)
		mountsMu.Unlock()
		m.stop(t)
		backend.CheckStore(t, storeDir)
	})
	m.start(t, opts...)
	return m.mnt, s
}

func (m *testMount) start(t testing.TB, opts ...Options) {
	t.Helper()
	o := Options{User: "alice"}
	if len(opts) > 0 {
		o = opts[0]
		if o.User == "" {
			o.User = "alice"
		}
	}
	fsys, err := Mount(m.store, m.mnt, o)
	if err != nil {
		t.Fatal(err)
	}
	m.fsys, m.stopped = fsys, false
}

// stop unmounts, waits for the server and closes the store.
func (m *testMount) stop(t testing.TB) {
	t.Helper()
	if m.stopped {
		return
	}
	m.stopped = true
	var err error
	for i := 0; i < 20; i++ {
		if err = m.fsys.Unmount(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || isMounted(m.mnt) {
		exec.Command("umount", "-l", m.mnt).Run()
		t.Errorf("mount left behind at %s: %v", m.mnt, err)
	}
	m.fsys.Wait()
	if err := m.store.Close(); err != nil {
		t.Errorf("close store: %v", err)
	}
}

// remount unmounts the test's mount, closes and reopens its store and
// mounts it again on the same mountpoint; it returns the new store.
func remount(t testing.TB, opts ...Options) *backend.Store {
	t.Helper()
	m := mountOf(t)
	if m == nil {
		t.Fatal("remount without mountT")
	}
	m.stop(t)
	s, err := backend.Open(m.storeDir, backend.TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	m.store = s
	m.start(t, opts...)
	return s
}

// isMounted reports whether dir is a mountpoint in /proc/mounts.
func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// Helpers shared by the tests.

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkContent(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", path, abbrev(got), abbrev(want))
	}
}

func abbrev(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func lstat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

// deliver writes data to tmp/name in maildir dir and renames it to
// sub/name (sub is "new" or "cur", possibly with a flags suffix on the
// new name); it returns the final path.
func deliver(t testing.TB, dir, sub, name string, data []byte) string {
	t.Helper()
	tmp := filepath.Join(dir, "tmp", name)
	writeFile(t, tmp, data)
	dst := filepath.Join(dir, sub, name)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// wantErrno fails t unless err is errno.
func wantErrno(t testing.TB, what string, err error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s: got error %v, want %v", what, err, errno)
	}
}

func names(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// memTempDir returns a new directory on tmpfs, removed when the test
// ends, or t.TempDir() if there is no /dev/shm. For tests whose subject
// is the FUSE layer at scale rather than the disk under the store.
func memTempDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "packdir-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Helper processes. Some checks must run in another process: fcntl locks
// belong to a process, and touching a mapping of a file on the mount from
// this one can deadlock: a goroutine stuck in a page fault that this
// process's FUSE server must answer cannot be stopped for the garbage
// collector, which stops the server's goroutines.

// helpers are what TestHelperProcess can do, by name: each gets a path
// and returns a line to report.
var helpers = map[string]func(path string) (string, error){
	"lock": lockProbe,
	"mmap": mmapWrite,
}

// runHelper runs helper name on path in a child process (this test
// binary) and returns what it reports.
func runHelper(t testing.TB, name, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "PACKDIR_HELPER="+name, "PACKDIR_HELPER_PATH="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "HELPER: "); ok {
			return s
		}
	}
	t.Fatalf("helper %s said nothing:\n%s", name, out)
	return ""
}

// TestHelperProcess is the child process of runHelper; it does nothing in
// a normal test run.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv("PACKDIR_HELPER")
	if name == "" {
		t.Skip("run by other tests in a child process")
	}
	out, err := helpers[name](os.Getenv("PACKDIR_HELPER_PATH"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("HELPER: %s\n", out)
}
