package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is one Maildir++ tree the workload runs on: a native directory or
// a packdir mount, both on the disk under the work directory.
type target struct {
	name string
	root string // the Maildir++ root the workload sees
	// data is what holds the target's bytes on disk, for the space phase.
	data string

	// packdir only
	bin, store string
	args       []string
	logPath    string
	conn       string // FUSE connection number, for an abort
	cmd        *exec.Cmd
	exited     chan error
}

// nativeFolders are the folders a new packdir user has, besides INBOX:
// the native tree starts the same, so that both hold the same files.
var nativeFolders = []string{".Draft", ".Outbox", ".Trash"}

func newNative(work string) (*target, error) {
	t := &target{name: "native", root: filepath.Join(work, "native")}
	t.data = t.root
	for _, folder := range append([]string{""}, nativeFolders...) {
		for _, d := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(t.root, folder, d), 0o700); err != nil {
				return nil, err
			}
		}
		if folder != "" {
			if err := os.WriteFile(filepath.Join(t.root, folder, "maildirfolder"), nil, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

func newPackdir(work, bin string, extra []string) (*target, error) {
	t := &target{name: "packdir", root: filepath.Join(work, "mnt"), bin: bin,
		store: filepath.Join(work, "store"), logPath: filepath.Join(work, "packdir.log")}
	t.data = t.store
	t.args = append([]string{"mount", "--user", "bench"}, extra...)
	if err := os.MkdirAll(t.root, 0o700); err != nil {
		return nil, err
	}
	if err := t.provision(); err != nil {
		return nil, err
	}
	return t, t.mount()
}

// provision creates the store and its user "bench", which packdir mount
// does not create.
func (t *target) provision() error {
	for _, args := range [][]string{{"init", t.store}, {"user", "add", "bench", t.store}} {
		if out, err := exec.Command(t.bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("packdir %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// mount starts `packdir mount` and waits until the kernel serves it.
func (t *target) mount() error {
	logf, err := os.OpenFile(t.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	t.cmd = exec.Command(t.bin, append(t.args, t.store, t.root)...)
	t.cmd.Stdout, t.cmd.Stderr = logf, logf
	// Own process group, so that Ctrl-C reaches the daemon only through
	// our cleanup; Pdeathsig unmounts it if the benchmark dies.
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("start packdir: %w", err)
	}
	t.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(t.cmd, t.exited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-t.exited:
			t.cmd = nil
			return fmt.Errorf("packdir mount exited before mounting (%v); see %s", err, t.logPath)
		default:
		}
		if conn, err := fuseConn(t.root); err != nil || conn != "" {
			t.conn = conn
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.kill()
	return fmt.Errorf("packdir did not mount %s within 30s; see %s", t.root, t.logPath)
}

// unmount stops the daemon as a user would (SIGTERM: flush, unmount).
func (t *target) unmount() error {
	if t.cmd == nil {
		return nil
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-t.exited:
		t.cmd = nil
		if err != nil {
			return fmt.Errorf("packdir mount exited with %v; see %s", err, t.logPath)
		}
		return nil
	case <-time.After(30 * time.Second):
		waiting, _ := os.ReadFile(filepath.Join("/sys/fs/fuse/connections", t.conn, "waiting"))
		fmt.Fprintf(os.Stderr, "packdir-bench: daemon %d still running 30s after SIGTERM; FUSE connection %s, requests waiting: %s\n%s",
			t.pid(), t.conn, strings.TrimSpace(string(waiting)), procState(t.pid()))
		t.kill()
		return fmt.Errorf("packdir did not exit within 30s of SIGTERM; killed it")
	}
}

// kill ends the daemon by its PID and detaches the mount if it is left.
// A daemon stuck in the kernel (a request to its own mount while it
// exits) ignores SIGKILL: aborting its FUSE connection frees it.
func (t *target) kill() {
	if t.cmd != nil {
		t.cmd.Process.Kill()
		select {
		case <-t.exited:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(os.Stderr, "packdir-bench: daemon %d stuck after SIGKILL; aborting its FUSE connection %s\n%s", t.pid(), t.conn, procState(t.pid()))
			abortConn(t.conn)
			<-t.exited
		}
		t.cmd = nil
	}
	if ok, _ := isFuseMount(t.root); ok {
		syscall.Unmount(t.root, syscall.MNT_DETACH)
	}
}

// procState describes where process pid is stuck: its open files and,
// for each thread, the kernel function it sleeps in and the kernel stack
// (readable by root only), for a report of a daemon that does not exit.
func procState(pid int) string {
	var b strings.Builder
	dir := fmt.Sprintf("/proc/%d", pid)
	if fds, err := os.ReadDir(dir + "/fd"); err == nil {
		for _, fd := range fds {
			target, _ := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			fmt.Fprintf(&b, "  fd %s -> %s\n", fd.Name(), target)
		}
	}
	tasks, _ := os.ReadDir(dir + "/task")
	for _, task := range tasks {
		tdir := filepath.Join(dir, "task", task.Name())
		wchan, _ := os.ReadFile(tdir + "/wchan")
		stack, _ := os.ReadFile(tdir + "/stack")
		fmt.Fprintf(&b, "  thread %s in %s\n", task.Name(), wchan)
		for _, line := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			if line != "" {
				fmt.Fprintf(&b, "    %s\n", line)
			}
		}
	}
	return b.String()
}

// abortConn aborts FUSE connection conn through fusectl.
func abortConn(conn string) {
	const ctl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(ctl, conn)); err != nil {
		syscall.Mount("none", ctl, "fusectl", 0, "")
	}
	os.WriteFile(filepath.Join(ctl, conn, "abort"), []byte("1"), 0)
}

// pid is the daemon's process id, 0 for the native target.
func (t *target) pid() int {
	if t.cmd == nil {
		return 0
	}
	return t.cmd.Process.Pid
}

// dropCaches empties the kernel's page, dentry and inode caches, and for
// packdir remounts, so that nothing of the tree is cached anywhere.
func (t *target) dropCaches() error {
	if t.cmd != nil {
		if err := t.unmount(); err != nil {
			return err
		}
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches (cold phases need root): %w", err)
	}
	if t.bin != "" {
		return t.mount()
	}
	return nil
}

// rssBytes is the daemon's resident set size.
func (t *target) rssBytes() (int64, error) { return t.procStatus("VmRSS:") }

// anonBytes is the part of the daemon's RSS that is its own memory, not
// pages of files it maps (bbolt maps index.db; those pages are the page
// cache's, and the kernel reclaims them under pressure).
func (t *target) anonBytes() (int64, error) { return t.procStatus("RssAnon:") }

// procStatus returns a kB field of /proc/PID/status, in bytes.
func (t *target) procStatus(field string) (int64, error) {
	if t.cmd == nil {
		return 0, errors.New("no daemon")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", t.pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, t.pid())
}

// isFuseMount reports whether dir is a FUSE mount point.
func isFuseMount(dir string) (bool, error) {
	conn, err := fuseConn(dir)
	return conn != "", err
}

// fuseConn returns the FUSE connection number (the device minor) of the
// mount on dir, or "" if dir is no FUSE mount.
func fuseConn(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				_, minor, _ := strings.Cut(fields[2], ":")
				return minor, nil
			}
		}
	}
	return "", sc.Err()
}
