package test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestFault8SIGHUP: closing the terminal that runs the daemon sends it
// SIGHUP and takes its output away. The daemon handles SIGHUP as SIGTERM:
// it logs the signal, unmounts and exits 0, also when its stderr is a
// pipe that nobody reads any more (a `| tee` that died with the terminal).
// It used to die of the signal (exit 129) and leave a dead mount (issue
// 14, item 8). Started under nohup, it keeps ignoring SIGHUP.
func TestFault8SIGHUP(t *testing.T) {
	harness.RequireFuse(t)
	for _, closed := range []bool{false, true} {
		name := map[bool]string{false: "output read", true: "output pipe closed"}[closed]
		t.Run(name, func(t *testing.T) {
			store, mnt := hupStore(t)
			d := startDaemon(t, store, mnt, nil, "--user", "alice")
			if _, err := os.Stat(filepath.Join(mnt, "cur")); err != nil {
				t.Fatal(err)
			}
			if closed {
				d.closeOutput()
			}
			syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP)
			out := d.wait(t)
			if !closed && !strings.Contains(out, "signal=hangup") {
				t.Errorf("no log line names the hangup; output:\n%s", out)
			}
		})
	}
	// With SIGHUP and SIGTERM both sent, a daemon that handled SIGHUP
	// would name it: the kernel delivers pending signals lowest first.
	t.Run("nohup", func(t *testing.T) {
		store, mnt := hupStore(t)
		d := startDaemon(t, store, mnt, []string{"nohup"}, "--user", "alice")
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP)
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
		if out := d.wait(t); strings.Contains(out, "hangup") || !strings.Contains(out, "signal=terminated") {
			t.Errorf("under nohup the daemon acted on SIGHUP, or not on SIGTERM; output:\n%s", out)
		}
	})
}

// hupStore makes a store with user alice and an empty mount point
// (absolute, symlinks resolved, as mountinfo shows it).
func hupStore(t *testing.T) (store, mnt string) {
	t.Helper()
	dir := t.TempDir()
	store = filepath.Join(dir, "store")
	mnt, err := filepath.EvalSymlinks(emptyDir(t, dir, "mnt"))
	mustDo(t, err)
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "alice", store)
	return store, mnt
}

// daemon is a `packdir mount` run without the harness, whose output goes
// to a pipe the test may close.
type daemon struct {
	cmd    *exec.Cmd
	done   chan error
	exited bool
	r      *os.File
	out    chan string
	mnt    string
}

// startDaemon starts `packdir mount args... store mnt`, through the
// command wrap if given (nohup, which execs it), and returns once mnt
// (absolute, symlinks resolved) is a FUSE mount. When the test ends, a
// daemon still running is killed by its PID and its mount detached.
func startDaemon(t *testing.T, store, mnt string, wrap []string, args ...string) *daemon {
	t.Helper()
	r, w, err := os.Pipe()
	mustDo(t, err)
	d := &daemon{done: make(chan error, 1), r: r, out: make(chan string, 1), mnt: mnt}
	argv := append(append(append(wrap, harness.Binary(t), "mount"), args...), store, mnt)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = w, w
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	mustDo(t, d.cmd.Start())
	w.Close()
	go func() { d.done <- d.cmd.Wait() }()
	go func() {
		b, _ := io.ReadAll(r)
		d.out <- string(b)
	}()
	t.Cleanup(func() {
		if !d.exited {
			syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				t.Errorf("packdir (pid %d) stuck after SIGKILL; aborting its FUSE connection", d.cmd.Process.Pid)
				if err := harness.AbortFuse(mnt); err != nil {
					t.Error(err)
				}
				<-d.done
			}
		}
		if mountedAt(t, mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		r.Close()
	})
	deadline := time.Now().Add(time.Minute)
	for !mountedAt(t, mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after a minute", mnt)
		}
		select {
		case err := <-d.done:
			d.exited = true
			t.Fatalf("packdir exited before mounting: %v; output:\n%s", err, d.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return d
}

// wait waits for the daemon to exit after a signal and returns its
// output; the daemon must exit 0 with its mount gone.
func (d *daemon) wait(t *testing.T) string {
	t.Helper()
	err := <-d.done
	d.exited = true
	out := d.output()
	if err != nil {
		t.Errorf("packdir mount after the signal: %v; output:\n%s", err, out)
	}
	if mountedAt(t, d.mnt) {
		t.Errorf("%s still mounted after packdir exited", d.mnt)
	}
	return out
}

// closeOutput closes the read end of the daemon's output pipe, as a
// reader that died would.
func (d *daemon) closeOutput() { d.r.Close() }

// output returns what the daemon wrote, once it has exited.
func (d *daemon) output() string { return <-d.out }
