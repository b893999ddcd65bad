// Package harness runs the built packdir binary for the integration tests
// in test/: it builds ./cmd/packdir once per test process, mounts stores in
// subprocesses (so that a kernel deadlock cannot hang the test process),
// stops them as a user would, and fails a test that leaves a mount behind.
//
// Glossary: a Mount is one running `packdir mount` process and the FUSE
// mount it serves; the corpus is the shared test mail in ../shared/corpus.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts for a mount to appear, for a daemon to exit after a signal, and
// for an administrative command.
const (
	mountTimeout   = 20 * time.Second
	exitTimeout    = 20 * time.Second
	commandTimeout = 10 * time.Minute
)

var build struct {
	once sync.Once
	dir  string // temporary directory holding the binary
	bin  string
	err  error
}

// Main runs the tests of a package that uses the harness and removes the
// binary Binary built. Call it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Binary builds ./cmd/packdir once per test process and returns the path of
// the binary. With PACKDIR_TEST_RACE set, the binary is built with -race.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(buildBinary)
	if build.err != nil {
		t.Fatalf("harness: building packdir: %v", build.err)
	}
	return build.bin
}

func buildBinary() {
	root, err := RepoRoot()
	if err != nil {
		build.err = err
		return
	}
	build.dir, err = os.MkdirTemp("", "packdir-harness-")
	if err != nil {
		build.err = err
		return
	}
	build.bin = filepath.Join(build.dir, "packdir")
	args := []string{"build", "-o", build.bin}
	if os.Getenv("PACKDIR_TEST_RACE") != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/packdir")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		build.err = fmt.Errorf("go build: %v\n%s", err, out)
	}
}

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory (a test runs in its package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Corpus returns the absolute path of the shared test corpus: the first
// shared/corpus found walking up from the repository root (the repository
// is checked out beside shared/, in development and in CI), or
// $PACKDIR_CORPUS if set. A missing corpus fails the test: it is part of
// the project, not optional.
func Corpus(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("PACKDIR_CORPUS"); dir != "" {
		return checkCorpus(t, dir)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for dir := root; ; dir = filepath.Dir(dir) {
		c := filepath.Join(dir, "shared", "corpus")
		if _, err := os.Stat(filepath.Join(c, "SHA256SUMS")); err == nil {
			return c
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	t.Fatalf("harness: test corpus not found: no shared/corpus/SHA256SUMS in %s or any directory above it "+
		"(the repository must be checked out beside shared/, or set PACKDIR_CORPUS)", root)
	return ""
}

func checkCorpus(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "SHA256SUMS")); err != nil {
		t.Fatalf("harness: PACKDIR_CORPUS=%s is not the test corpus: %v", dir, err)
	}
	return abs
}

// RequireRoot fails the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("harness: this test needs root (euid is %d); scripts/test and CI run as root", os.Geteuid())
	}
}

// RequireFuse fails the test unless /dev/fuse exists.
func RequireFuse(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("harness: this test needs FUSE and /dev/fuse is missing (%v); "+
			"run on a machine with the fuse module, or a container started with --device /dev/fuse", err)
	}
}

// Run runs `packdir name args...` and returns its standard output. A
// non-zero exit fails the test, with both outputs.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	stdout, stderr, code := RunExit(t, name, args...)
	if code != 0 {
		t.Fatalf("packdir %s %s: exit %d\nstdout:\n%s\nstderr:\n%s",
			name, strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// RunExit runs `packdir name args...` and returns its outputs and exit
// code. Only a command that cannot be run at all (or runs past 10 minutes)
// fails the test.
func RunExit(t testing.TB, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append([]string{name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("packdir %s %s: still running after %v\nstderr:\n%s", name, strings.Join(args, " "), commandTimeout, errOut.String())
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("packdir %s: %v", name, err)
	}
	return out.String(), errOut.String(), 0
}

// Mount is a running `packdir mount` and the FUSE mount it serves.
type Mount struct {
	Store, Dir string
	PID        int

	args    []string
	absDir  string // Dir made absolute with symlinks resolved, as mountinfo shows it
	t       testing.TB
	cmd     *exec.Cmd
	output  *syncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	stopped bool          // Stop or Kill has dealt with this process
}

// Start runs `packdir mount args... store dir` and returns once dir is a
// FUSE mount. It fails the test if the process exits first, or if no mount
// appears within 20 seconds. The mount is stopped, and checked for a clean
// exit, when the test ends.
//
// mount creates neither stores nor users. If store does not exist, Start
// creates it with `packdir init` and adds the user that --user names with
// `packdir user add`, as scripts/run does. An existing store is left
// alone: a test that inits its store adds its users itself.
func Start(t testing.TB, store, dir string, args ...string) *Mount {
	t.Helper()
	provision(t, store, args)
	m := &Mount{Store: store, Dir: dir, args: args, t: t}
	m.start(t)
	t.Cleanup(func() { m.Stop(t) })
	return m
}

// provision inits store, and adds the user --user names in args, if
// store does not exist.
func provision(t testing.TB, store string, args []string) {
	t.Helper()
	if _, err := os.Lstat(store); !errors.Is(err, os.ErrNotExist) {
		return
	}
	Run(t, "init", store)
	if user := userArg(args); user != "" {
		Run(t, "user", "add", user, store)
	}
}

// userArg returns the value of --user (or -user, --user=NAME) in args.
func userArg(args []string) string {
	for i, a := range args {
		switch {
		case (a == "--user" || a == "-user") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--user="):
			return strings.TrimPrefix(a, "--user=")
		case strings.HasPrefix(a, "-user="):
			return strings.TrimPrefix(a, "-user=")
		}
	}
	return ""
}

func (m *Mount) start(t testing.TB) {
	t.Helper()
	abs, err := filepath.Abs(m.Dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		t.Fatalf("harness: mountpoint %s: %v", m.Dir, err)
	}
	m.absDir = abs
	m.output = &syncBuffer{}
	argv := append(append([]string{"mount"}, m.args...), m.Store, m.Dir)
	m.cmd = exec.Command(Binary(t), argv...)
	m.cmd.Stdout, m.cmd.Stderr = m.output, m.output
	// Own process group, so a signal to the test's group (Ctrl-C) reaches
	// the daemon only through Stop. Pdeathsig ends the daemon, and so
	// unmounts, if the test process dies (a test timeout panics).
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("harness: starting packdir mount: %v", err)
	}
	m.PID = m.cmd.Process.Pid
	m.stopped = false
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		m.waitErr = cmd.Wait()
		close(done)
	}(m.cmd, m.done)
	m.waitMounted(t)
}

func (m *Mount) waitMounted(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(mountTimeout)
	for {
		select {
		case <-m.done:
			m.stopped = true
			t.Fatalf("packdir mount %s %s exited before mounting (%v); output:\n%s",
				m.Store, m.Dir, m.waitErr, m.output.String())
		default:
		}
		mounted, err := IsFuseMounted(m.absDir)
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		if mounted {
			return
		}
		if time.Now().After(deadline) {
			m.Kill(t)
			t.Fatalf("packdir mount %s %s: no FUSE mount after %v; output:\n%s",
				m.Store, m.Dir, mountTimeout, m.output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output returns what the daemon has printed so far (stdout and stderr).
func (m *Mount) Output() string { return m.output.String() }

// Stop sends SIGTERM and waits for the daemon to exit, as an administrator
// would stop it. It reports an error if the daemon does not exit 0 within
// 20 seconds (then SIGKILLs it), or leaves its mount behind (then unmounts
// it). Stop is idempotent; Start registers it as a cleanup.
func (m *Mount) Stop(t testing.TB) {
	t.Helper()
	if m.stopped {
		return
	}
	m.stopped = true
	if !m.exited() {
		m.signal(syscall.SIGTERM)
	}
	if !m.waitExit(exitTimeout) {
		t.Errorf("packdir mount (pid %d) still running %v after SIGTERM; killing it; output:\n%s",
			m.PID, exitTimeout, m.output.String())
		m.killStuck(t)
	} else if m.waitErr != nil {
		t.Errorf("packdir mount (pid %d) did not exit cleanly: %v; output:\n%s", m.PID, m.waitErr, m.output.String())
	}
	if mounted, _ := IsFuseMounted(m.absDir); mounted {
		m.unmount(t, true)
		t.Errorf("mount left behind: %s was still mounted after packdir (pid %d) exited", m.Dir, m.PID)
	}
}

// Kill SIGKILLs the daemon, as a crash would, waits for it to exit and
// lazily unmounts the dead mount.
func (m *Mount) Kill(t testing.TB) {
	t.Helper()
	if m.stopped {
		return
	}
	m.stopped = true
	m.killStuck(t)
	if mounted, _ := IsFuseMounted(m.absDir); mounted {
		m.unmount(t, false)
	}
}

// killStuck SIGKILLs the daemon and waits for it to exit; if it does not,
// it reports so and aborts its FUSE connection, which frees it.
func (m *Mount) killStuck(t testing.TB) {
	t.Helper()
	m.signal(syscall.SIGKILL)
	if m.waitExit(exitTimeout) {
		return
	}
	t.Errorf("packdir mount (pid %d) still running %v after SIGKILL; aborting its FUSE connection", m.PID, exitTimeout)
	if err := AbortFuse(m.absDir); err != nil {
		t.Errorf("harness: %v", err)
	}
	if !m.waitExit(exitTimeout) {
		t.Errorf("packdir mount (pid %d) still running after its FUSE connection was aborted", m.PID)
	}
}

// Restart stops the daemon and starts it again on the same store and
// mountpoint: with args if any are given, else with the previous ones.
func (m *Mount) Restart(t testing.TB, args ...string) {
	t.Helper()
	m.Stop(t)
	if len(args) > 0 {
		m.args = args
	}
	m.start(t)
}

func (m *Mount) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// signal signals the daemon by PID, never by name; the process is not yet
// reaped (done is open), so the PID is still its own.
func (m *Mount) signal(sig syscall.Signal) {
	if !m.exited() {
		syscall.Kill(m.PID, sig)
	}
}

func (m *Mount) waitExit(d time.Duration) bool {
	select {
	case <-m.done:
		return true
	case <-time.After(d):
		return false
	}
}

// unmount detaches the mount lazily: fusermount3 first when fuseFirst
// (what a non-root user has), umount -l first otherwise.
func (m *Mount) unmount(t testing.TB, fuseFirst bool) {
	t.Helper()
	cmds := [][]string{{"fusermount3", "-u", "-z", m.absDir}, {"umount", "-l", m.absDir}}
	if !fuseFirst {
		cmds[0], cmds[1] = cmds[1], cmds[0]
	}
	var errs []string
	for _, c := range cmds {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err == nil {
			return
		}
		errs = append(errs, fmt.Sprintf("%s: %v %s", strings.Join(c, " "), err, bytes.TrimSpace(out)))
	}
	t.Errorf("harness: cannot unmount %s: %s", m.Dir, strings.Join(errs, "; "))
}

// MountEntry is one line of /proc/self/mountinfo, the fields we use.
type MountEntry struct {
	Device     string // field 3, major:minor; for FUSE the minor is the connection number
	MountPoint string // field 5, unescaped
	FSType     string // first field after the " - " separator, e.g. "fuse" or "fuse.packdir"
	Source     string // second field after the separator
}

// IsFuse reports whether the entry is a FUSE mount.
func (e MountEntry) IsFuse() bool { return strings.HasPrefix(e.FSType, "fuse") }

// ParseMountinfo parses the format of /proc/PID/mountinfo (proc(5)).
func ParseMountinfo(r io.Reader) ([]MountEntry, error) {
	var entries []MountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		e, err := parseMountinfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

// parseMountinfoLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// where the optional fields (master:1) run up to the lone "-".
func parseMountinfoLine(line string) (MountEntry, error) {
	fields := strings.Split(line, " ")
	if len(fields) < 6 {
		return MountEntry{}, fmt.Errorf("%d fields, want at least 6: %q", len(fields), line)
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(fields) {
		return MountEntry{}, fmt.Errorf("no \" - fstype source\" part: %q", line)
	}
	return MountEntry{
		Device:     fields[2],
		MountPoint: unescapeMountinfo(fields[4]),
		FSType:     fields[sep+1],
		Source:     unescapeMountinfo(fields[sep+2]),
	}, nil
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab,
// newline and backslash (\040 \011 \012 \134).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// IsFuseMounted reports whether dir (absolute, symlinks resolved) is a FUSE
// mount point in /proc/self/mountinfo.
func IsFuseMounted(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	entries, err := ParseMountinfo(f)
	if err != nil {
		return false, err
	}
	return fuseMountedIn(entries, dir), nil
}

func fuseMountedIn(entries []MountEntry, dir string) bool {
	_, ok := fuseMountAt(entries, dir)
	return ok
}

func fuseMountAt(entries []MountEntry, dir string) (MountEntry, bool) {
	dir = filepath.Clean(dir)
	for _, e := range entries {
		if e.MountPoint == dir && e.IsFuse() {
			return e, true
		}
	}
	return MountEntry{}, false
}

// AbortFuse aborts the FUSE connection of the mount on dir (absolute,
// symlinks resolved) through fusectl, as the last way to free a daemon
// that SIGKILL does not end: one of its threads waits in the kernel for
// an answer to a request to its own mount, which no thread is left to
// give.
func AbortFuse(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	entries, err := ParseMountinfo(f)
	f.Close()
	if err != nil {
		return err
	}
	e, ok := fuseMountAt(entries, dir)
	if !ok {
		return fmt.Errorf("no FUSE mount on %s", dir)
	}
	_, conn, _ := strings.Cut(e.Device, ":")
	const ctl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(ctl, conn)); err != nil {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(ctl, conn, "abort"), []byte("1"), 0)
}

// syncBuffer is a bytes.Buffer that the daemon's output goroutine and the
// test can use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
