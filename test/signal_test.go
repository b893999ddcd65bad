package test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestSignalRightAfterMount sends SIGTERM the moment the mount appears,
// as a service manager or a script may: the daemon must unmount and exit
// 0 every time, never die of the signal and leave a dead mount behind.
func TestSignalRightAfterMount(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	store, mnt := filepath.Join(dir, "store"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt, err := filepath.EvalSymlinks(mnt) // as mountinfo shows it
	if err != nil {
		t.Fatal(err)
	}
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "alice", store)
	for i := 0; i < 20; i++ {
		var out bytes.Buffer
		cmd := exec.Command(harness.Binary(t), "mount", "--user", "alice", store, mnt)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		exited := false
		t.Cleanup(func() {
			if !exited {
				syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Errorf("packdir (pid %d) stuck after SIGKILL; aborting its FUSE connection", cmd.Process.Pid)
					if err := harness.AbortFuse(mnt); err != nil {
						t.Error(err)
					}
					<-done
				}
			}
			if ok, _ := harness.IsFuseMounted(mnt); ok {
				syscall.Unmount(mnt, syscall.MNT_DETACH)
			}
		})
		waitFuseMounted(t, mnt, done, &out)
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-done:
			exited = true
			if err != nil {
				t.Fatalf("round %d: SIGTERM right after the mount appeared: %v; output:\n%s", i, err, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: packdir still running 20s after SIGTERM", i)
		}
		if ok, err := harness.IsFuseMounted(mnt); err != nil || ok {
			t.Fatalf("round %d: %s still mounted after packdir exited (%v)", i, mnt, err)
		}
	}
}

// waitFuseMounted polls mountinfo without pause until mnt is a FUSE
// mount, so that the caller acts as soon as the kernel shows it.
func waitFuseMounted(t *testing.T, mnt string, done <-chan error, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("packdir exited before mounting: %v; output:\n%s", err, out.String())
		default:
		}
		if ok, err := harness.IsFuseMounted(mnt); err != nil {
			t.Fatal(err)
		} else if ok {
			return
		}
	}
	t.Fatalf("%s not mounted after 20s", mnt)
}

// TestAbortFuse checks the harness's last resort for a daemon stuck in
// the kernel: aborting the mount's FUSE connection cuts it off at once.
func TestAbortFuse(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	mnt, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := harness.Start(t, filepath.Join(t.TempDir(), "store"), mnt, "--user", "alice")
	if _, err := os.Stat(filepath.Join(mnt, "cur")); err != nil {
		t.Fatal(err)
	}
	if err := harness.AbortFuse(mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "new")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat in the mount after the abort: %v, want ENOTCONN", err)
	}
	m.Kill(t) // the daemon may have exited already; the dead mount is detached
}
