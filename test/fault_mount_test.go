package test

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestFault9FailedMountLeavesNothing: a mount by a user other than root
// that fails once the kernel has mounted (uid 65534 mounting a tree of
// uid 1001: go-fuse's first look into the root gets EACCES) is undone:
// nothing is left in mountinfo, and a second try fails the same way
// instead of finding the mount point busy (issue 14, item 9).
func TestFault9FailedMountLeavesNothing(t *testing.T) {
	harness.RequireFuse(t)
	harness.RequireRoot(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Fatalf("fusermount3 (package fuse3, which scripts/test installs) is needed to mount as a user: %v", err)
	}
	userFuse(t)
	dir := mailUserDir(t) // every directory above it reachable by uid 65534, TMPDIR's too
	mustDo(t, os.Chmod(dir, 0o755))
	store := filepath.Join(dir, "store")
	mnt := emptyDir(t, dir, "mnt")
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "--uid", "1001", "--gid", "1001", "other", store)
	bin := filepath.Join(dir, "packdir") // the harness's build directory is private to root
	copyFile(t, harness.Binary(t), bin, 0o755)
	for _, p := range []string{store, mnt} {
		mustDo(t, chownTree(p, 65534, 65534))
	}
	mnt, err := filepath.EvalSymlinks(mnt)
	mustDo(t, err)
	t.Cleanup(func() {
		if mountedAt(t, mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})

	for try := 1; try <= 2; try++ {
		out, code := runAs(t, 65534, 65534, bin, "mount", "--user", "other", store, mnt)
		if code == 0 {
			t.Fatalf("try %d: mount as uid 65534 of uid 1001's tree exited 0:\n%s", try, out)
		}
		if strings.Contains(out, "busy") {
			t.Errorf("try %d: the mount point is busy, left so by the first try:\n%s", try, out)
		}
		if mountedAt(t, mnt) {
			t.Errorf("try %d: mount exited %d (%s) and left a mount on %s", try, code, strings.TrimSpace(out), mnt)
		}
	}
}

func emptyDir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	mustDo(t, os.Mkdir(d, 0o755))
	return d
}

// userFuse lets users other than root mount: fusermount3 opens /dev/fuse
// with the caller's permissions, and fuse3's udev rule makes it 0666 on an
// ordinary machine, but a container's /dev may keep it 0600. The mode is
// put back when the test ends.
func userFuse(t *testing.T) {
	t.Helper()
	fi, err := os.Stat("/dev/fuse")
	mustDo(t, err)
	mode := fi.Mode().Perm()
	if mode&0o006 == 0o006 {
		return
	}
	mustDo(t, os.Chmod("/dev/fuse", 0o666))
	t.Cleanup(func() { os.Chmod("/dev/fuse", mode) })
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	mustDo(t, err)
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	mustDo(t, err)
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	mustDo(t, out.Close())
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// runAs runs a command as uid and gid, with no supplementary groups, and
// returns its combined output and exit code. A command that mounts after
// all and serves is ended by its PID once the test has looked (a minute
// at most).
func runAs(t *testing.T, uid, gid uint32, name string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	mustDo(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		<-done
		t.Errorf("%s %s: still running after a minute; ended it", name, strings.Join(args, " "))
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// mountedAt reports whether anything, FUSE or not, is mounted on dir.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	mustDo(t, err)
	defer f.Close()
	entries, err := harness.ParseMountinfo(f)
	mustDo(t, err)
	for _, e := range entries {
		if e.MountPoint == dir {
			return true
		}
	}
	return false
}
