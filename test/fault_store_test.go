package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestFault7MistypedStore: mount on a store path that does not exist is
// refused in one line that names `packdir init`, and creates nothing: not
// the store, not its parents, no mount (issue 14, item 7).
func TestFault7MistypedStore(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	mnt := emptyDir(t, dir, "mnt")
	typo := filepath.Join(dir, "srv", "mial", "store")
	for _, args := range [][]string{
		{"mount", typo, mnt},
		{"mount", "--user", "alice", typo, mnt},
	} {
		wantMountRefused(t, mnt, args, 1, "does not exist", "packdir init "+typo)
	}
	if _, err := os.Lstat(filepath.Join(dir, "srv")); !os.IsNotExist(err) {
		t.Errorf("a refused mount left %s behind (lstat: %v)", filepath.Join(dir, "srv"), err)
	}
	requireUnmountedEmpty(t, mnt)
}

// TestFault7NonEmptyDirs: init, or mount, given a directory full of other
// files (a Maildir: the arguments swapped) refuses in one line and writes
// nothing there; a mount point that holds files is refused unless
// --nonempty is given (issue 14, item 7).
func TestFault7NonEmptyDirs(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"tmp", "new", "cur"} {
		mustDo(t, os.MkdirAll(filepath.Join(maildir, sub), 0o700))
	}
	mustDo(t, os.WriteFile(filepath.Join(maildir, "cur", "1.host:2,S"), []byte("Subject: keep me\n\nbody\n"), 0o600))
	before := dirDigest(t, maildir)
	mnt := emptyDir(t, dir, "mnt")

	wantCLIError(t, []string{"init", maildir}, 1, maildir, "not empty", "new or empty directory")
	wantMountRefused(t, mnt, []string{"mount", maildir, mnt}, 1, "is not a packdir store", "other files")
	wantMountRefused(t, mnt, []string{"mount", "--user", "alice", maildir, mnt}, 1, "is not a packdir store")
	if after := dirDigest(t, maildir); after != before {
		t.Errorf("refused commands changed the Maildir:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	store := filepath.Join(dir, "store")
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "alice", store)
	old := filepath.Join(mnt, "old-mail")
	mustDo(t, os.WriteFile(old, []byte("under the mount\n"), 0o600))
	wantMountRefused(t, mnt, []string{"mount", "--user", "alice", store, mnt}, 1, "not empty", "old-mail", "--nonempty")

	m := harness.Start(t, store, mnt, "--user", "alice", "--nonempty")
	if _, err := os.Stat(filepath.Join(mnt, "cur")); err != nil {
		t.Errorf("mount --nonempty: %v", err)
	}
	m.Stop(t)
	if b, err := os.ReadFile(old); err != nil || string(b) != "under the mount\n" {
		t.Errorf("the file under the mount after unmounting: %q, %v", b, err)
	}

	fresh := emptyDir(t, dir, "fresh")
	mustDo(t, os.Mkdir(filepath.Join(fresh, "lost+found"), 0o700))
	harness.Run(t, "init", fresh) // a new file system's root counts as empty
	wantCLIError(t, []string{"init", fresh}, 1, "a packdir store already")
}

// TestFault7UnknownUser: mount --user with a user the store does not have
// is refused in one line naming `packdir user add`, and the store keeps
// its users and its containers byte for byte (issue 14, item 7).
func TestFault7UnknownUser(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mnt := emptyDir(t, dir, "mnt")
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "alice", store)
	users := harness.Run(t, "user", "list", store)
	containers := dirDigest(t, filepath.Join(store, "containers"))

	wantMountRefused(t, mnt, []string{"mount", "--user", "bob", store, mnt}, 1, "no user bob", "packdir user add")
	wantMountRefused(t, mnt, []string{"mount", "--user", "bob", "--uid", "0", store, mnt}, 2, "--uid", "packdir user add")
	if got := harness.Run(t, "user", "list", store); got != users {
		t.Errorf("users after the refused mount:\n%s\nwant:\n%s", got, users)
	}
	if got := dirDigest(t, filepath.Join(store, "containers")); got != containers {
		t.Errorf("the containers changed:\nbefore:\n%s\nafter:\n%s", containers, got)
	}
}

// TestFault7UIDRange: a uid or gid that does not fit the kernel's 32 bits
// (or is (uid_t)-1) is refused in one line, and no user is added (issue
// 14, item 7; 99999999999 used to wrap to 1215752191).
func TestFault7UIDRange(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	harness.Run(t, "init", store)
	for _, args := range [][]string{
		{"user", "add", "--uid", "99999999999", "bob", store},
		{"user", "add", "--gid", "99999999999", "bob", store},
		{"user", "add", "--uid", "4294967295", "bob", store},
	} {
		wantCLIError(t, args, 2, args[3], "out of range")
	}
	wantCLIError(t, []string{"user", "add", "--uid", "-1", "bob", store}, 2, "-1")
	if out := harness.Run(t, "user", "list", store); strings.Contains(out, "bob") {
		t.Errorf("a refused user add added bob:\n%s", out)
	}
	out := harness.Run(t, "user", "add", "--uid", "4294967294", "--gid", "4294967294", "bob", store)
	if !strings.Contains(out, "uid 4294967294, gid 4294967294") {
		t.Errorf("user add with the largest ids: %q", out)
	}
}

// TestFault7QuotaParseFirst: user add with a quota that is no size is
// refused before the user is added; user set leaves the quota (issue 14,
// item 7).
func TestFault7QuotaParseFirst(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	harness.Run(t, "init", store)
	wantCLIError(t, []string{"user", "add", "--quota-bytes", "lots", "bob", store}, 2, "--quota-bytes", "lots")
	if out := harness.Run(t, "user", "list", store); strings.Contains(out, "bob") {
		t.Errorf("user add --quota-bytes lots added bob anyway:\n%s", out)
	}
	harness.Run(t, "user", "add", "--quota-bytes", "1MiB", "bob", store)
	wantCLIError(t, []string{"user", "set", "--quota-bytes", "lots", "--quota-messages", "5", "bob", store}, 2, "lots")
	var st struct {
		UserSpace []struct {
			Name  string `json:"name"`
			Quota struct {
				Bytes    uint64 `json:"bytes"`
				Messages uint64 `json:"messages"`
			} `json:"quota"`
		} `json:"user_space"`
	}
	out := harness.Run(t, "stats", "--json", store)
	mustDo(t, json.Unmarshal([]byte(out), &st))
	if len(st.UserSpace) != 1 || st.UserSpace[0].Quota.Bytes != 1<<20 || st.UserSpace[0].Quota.Messages != 0 {
		t.Errorf("quota after a refused user set: %+v, want bob with 1 MiB and no message limit\n%s", st.UserSpace, out)
	}
}

// wantMountRefused runs `packdir args...`, a mount that must be refused,
// and checks it as wantCLIError does (exit code, one line holding each of
// want). Should the command mount mnt after all, as it did before these
// refusals, it is stopped by its PID and the test fails.
func wantMountRefused(t *testing.T, mnt string, args []string, code int, want ...string) {
	t.Helper()
	abs, err := filepath.EvalSymlinks(mnt)
	mustDo(t, err)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(harness.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	mustDo(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	line := "packdir " + strings.Join(args, " ")
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-done:
			checkRefusal(t, line, code, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), want)
			return
		case <-time.After(20 * time.Millisecond):
		}
		if ok, _ := harness.IsFuseMounted(abs); ok || time.Now().After(deadline) {
			syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			<-done
			if ok, _ := harness.IsFuseMounted(abs); ok {
				syscall.Unmount(abs, syscall.MNT_DETACH)
			}
			t.Fatalf("%s: mounted (or still running after a minute) instead of refusing; output:\n%s%s", line, stdout.String(), stderr.String())
		}
	}
}

func checkRefusal(t *testing.T, cmd string, wantCode, code int, stdout, stderr string, want []string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", cmd, code, wantCode, stdout, stderr)
	}
	line := strings.TrimSuffix(stderr, "\n")
	if line == "" || strings.Contains(line, "\n") || !strings.HasPrefix(line, "packdir: ") {
		t.Errorf("%s: stderr is not one line starting with \"packdir: \":\n%s", cmd, stderr)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: error %q does not say %q", cmd, line, w)
		}
	}
}

func requireUnmountedEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("%s holds %d entries (err %v); want an empty, unmounted directory", dir, len(entries), err)
	}
}

// dirDigest lists every file below dir with its mode, size and SHA-256.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(data)
			sum = hex.EncodeToString(h[:8])
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.Mode().String() + " " + strconv.FormatInt(fi.Size(), 10) + " " + sum + "\n")
		return nil
	})
	mustDo(t, err)
	return b.String()
}
