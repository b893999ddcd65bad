package test

import (
	"bytes"
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
				<-done
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
