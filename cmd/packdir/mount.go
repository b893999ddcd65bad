package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/fs"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount a store as Maildir++ trees (runs in the foreground)",
		ArgsUsage: "STORE MOUNTPOINT",
		Description: "STORE must exist ('packdir init' creates it). With --user, that user's\n" +
			"Maildir++ tree is the mount root ('packdir user add' creates it); without it\n" +
			"the root lists the users. MOUNTPOINT must be an empty directory unless\n" +
			"--nonempty is given. SIGINT, SIGTERM or SIGHUP flush, unmount and exit 0.\n\n" +
			"Examples:\n" +
			"   packdir init /srv/mail/store\n" +
			"   packdir user add --uid 1001 --gid 1001 alice /srv/mail/store\n" +
			"   packdir mount --user alice /srv/mail/store /home/alice/Maildir\n" +
			"   packdir mount --durability full /srv/mail/store /srv/mail/users",
		OnUsageError: onUsageError,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "user", Usage: "mount this user's Maildir++ tree as the root"},
			// --uid and --gid were how a mount created its user; they
			// remain, hidden, to point whoever still gives them to
			// 'packdir user add'.
			&cli.StringFlag{Name: "uid", Hidden: true},
			&cli.StringFlag{Name: "gid", Hidden: true},
			&cli.BoolFlag{Name: "nonempty", Usage: "mount even if MOUNTPOINT holds files (they are hidden until unmount)"},
			&cli.BoolFlag{Name: "allow-other", Value: os.Geteuid() == 0,
				Usage: "let other users reach the mount, with the kernel's permission checks (default: on for root)"},
			&cli.StringFlag{Name: "durability", Value: "normal",
				Usage: "normal: deliveries durable on return, other changes within 1s; full: every change durable on return"},
			&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request"},
			&cli.IntFlag{Name: "max-inodes", Value: fs.DefaultMaxInodes,
				Usage: "files the kernel may remember before some are forgotten (bounds the daemon's memory)"},
		}, profileFlags()...),
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	storeDir, mnt, full, err := mountArgs(c)
	if err != nil {
		return err
	}
	if err := checkMountpoint(mnt, c.Bool("nonempty")); err != nil {
		return err
	}
	if !backend.Exists(storeDir) {
		return notAStore(storeDir)
	}
	if err := checkApart(storeDir, mnt); err != nil {
		return err
	}
	s, err := openMounted(storeDir, full)
	if err != nil {
		return err
	}
	defer s.Close()
	user := c.String("user")
	if err := checkUser(s, storeDir, user); err != nil {
		return err
	}
	log := logger()
	stopProfiling, err := startProfiling(c, log)
	if err != nil {
		return err
	}
	defer stopProfiling()
	sig := notifyStop()
	defer signal.Stop(sig)
	f, err := fs.Mount(s, mnt, fs.Options{User: user, AllowOther: c.Bool("allow-other"), Debug: c.Bool("debug"), Logger: log, MaxInodes: c.Int("max-inodes")})
	if err != nil {
		return mountError(err, s, user)
	}
	log.Info("mounted", "store", storeDir, "mountpoint", mnt, "user", user)
	served := make(chan struct{})
	go unmountOnSignal(sig, f, mnt, log.Info, served)
	f.Wait()
	close(served)
	if err := s.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", storeDir, err)
	}
	log.Info("unmounted", "mountpoint", mnt)
	return nil
}

// mountArgs checks mount's command line before anything is opened.
func mountArgs(c *cli.Context) (store, mnt string, full bool, err error) {
	a, err := args(c, "STORE", "MOUNTPOINT")
	if err != nil {
		return "", "", false, err
	}
	if c.IsSet("uid") || c.IsSet("gid") {
		return "", "", false, usagef("mount creates no users, so it takes no --uid or --gid: add the user with 'packdir user add --uid N --gid N NAME STORE'")
	}
	if full, err = durability(c.String("durability")); err != nil {
		return "", "", false, err
	}
	if n := c.Int("max-inodes"); n < 1 {
		return "", "", false, usagef("--max-inodes is at least 1, not %d", n)
	}
	if err := checkPprofAddr(c.String("pprof")); err != nil {
		return "", "", false, err
	}
	return a[0], a[1], full, nil
}

// notifyStop catches the signals that end the daemon. Until it is called
// a signal ends the process, and recovery, which is safe to interrupt,
// with it. From the mount on it must unmount: killed while go-fuse's own first
// request to the new mount is in flight, the process would hang in the
// kernel, waiting for an answer from itself, with the mount dead. SIGHUP
// is among them because closing the terminal that runs the daemon sends
// it, unless it was ignored when the daemon started (nohup): Notify would
// undo that. SIGPIPE is ignored for the same case: Go ends a program whose
// write to a closed stdout or stderr pipe fails (a `| tee` that died with
// the terminal), and the log line "unmounting" would be that write.
func notifyStop() chan os.Signal {
	stops := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		stops = append(stops, syscall.SIGHUP)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, stops...)
	signal.Ignore(syscall.SIGPIPE)
	return sig
}

func durability(v string) (bool, error) {
	switch v {
	case "normal":
		return false, nil
	case "full":
		return true, nil
	}
	return false, usagef("--durability is normal or full, not %q", v)
}

// openMounted opens the store to mount.
func openMounted(dir string, full bool) (*backend.Store, error) {
	// A mounted store compacts in the background (FORMAT.md, Compaction).
	s, err := backend.Open(dir, backend.Options{Logger: logger(), SyncAlways: full, AutoCompact: true})
	if errors.Is(err, backend.ErrInUse) {
		return nil, fmt.Errorf("store %s is already mounted by another packdir", dir)
	}
	return s, err
}

// checkUser refuses a --user the store does not have. A mount used to
// create it, owned by whoever ran the mount (root, for a daemon): a
// mistyped name became a new tree owned by root.
func checkUser(s *backend.Store, store, name string) error {
	if name == "" {
		return nil
	}
	_, err := s.User(name)
	if errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("store %s has no user %s (add it with 'packdir user add --uid N --gid N %s %s')", store, name, name, store)
	}
	return err
}

// mountError explains a mount that failed after the kernel made it (and
// fs.Mount undid it). Run by a user other than root, the daemon's own
// first look into the new mount passes the kernel's permission checks
// (default_permissions), and another uid's tree is closed to it.
func mountError(err error, s *backend.Store, user string) error {
	if !errors.Is(err, syscall.EACCES) || user == "" || os.Geteuid() == 0 {
		return err
	}
	u, uerr := s.User(user)
	if uerr != nil || u.UID == uint32(os.Geteuid()) {
		return err
	}
	return fmt.Errorf("%w: the tree of user %s belongs to uid %d; mount it as root or as uid %d", err, user, u.UID, u.UID)
}

// checkMountpoint refuses a missing mountpoint, one that is not a
// directory, one that something is already mounted on, and, unless
// nonempty, one that holds files: the mount would hide them (an old
// Maildir whose mail seems lost, or the wrong directory).
func checkMountpoint(dir string, nonempty bool) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if mounted, err := isMountpoint(abs); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("mountpoint %s is busy: something is already mounted there", dir)
	}
	if nonempty {
		return nil
	}
	names, err := dirNames(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty (%s): the mount would hide those files; give an empty directory, or --nonempty to mount over them", dir, sample(names))
	}
	return nil
}

// checkApart refuses a mountpoint inside the store and a store inside
// the mountpoint: the daemon would reach its own files through its own
// mount, and wait on itself.
func checkApart(store, mnt string) error {
	s, err := realPath(store)
	if err != nil {
		return err
	}
	m, err := realPath(mnt)
	if err != nil {
		return err
	}
	switch {
	case within(m, s):
		return fmt.Errorf("mountpoint %s is inside the store %s; mount it elsewhere", mnt, store)
	case within(s, m):
		return fmt.Errorf("store %s is inside the mountpoint %s; mount it elsewhere", store, mnt)
	}
	return nil
}

func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// within reports whether path p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// isMountpoint reports whether dir is a mount point in /proc/self/mountinfo.
func isMountpoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountOnSignal unmounts on the first signal from sig. If files are
// still open the mount is detached, and served until the last one closes.
func unmountOnSignal(sig <-chan os.Signal, f *fs.FS, mnt string, info func(string, ...any), served <-chan struct{}) {
	s := <-sig
	info("unmounting", "signal", s.String(), "mountpoint", mnt)
	if unmounted(f) {
		exitIfStuck(served, info)
		return
	}
	info("mountpoint busy; detaching it", "mountpoint", mnt)
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		info("detach failed", "err", err)
	}
}

// unmounted tries to unmount f for a second.
func unmounted(f *fs.FS) bool {
	for i := 0; i < 10; i++ {
		if err := f.Unmount(); err == nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// stuckAfterUnmount is how long a request may still run once the
// mount is gone before the process gives up on it.
const stuckAfterUnmount = 10 * time.Second

// exitIfStuck ends the process if a request still runs long after a
// signal unmounted the mount: SIGTERM must always end the daemon. A
// request that never returns would keep it alive, and the store open,
// forever. Exiting without closing the store is safe: the next open
// recovers, as after kill -9. A detached mount with files still open is
// served on: only the kernel knows when its last file closes.
func exitIfStuck(served <-chan struct{}, info func(string, ...any)) {
	select {
	case <-served:
	case <-time.After(stuckAfterUnmount):
		info("a request is still running after the unmount; exiting without closing the store (the next mount recovers it)")
		os.Exit(1)
	}
}
