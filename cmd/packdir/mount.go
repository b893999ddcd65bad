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
		Description: "Creates STORE on first use. With --user, that user's Maildir++ tree is the\n" +
			"mount root (and the user is created, with folders .Draft .Outbox .Trash, on\n" +
			"first use); without it the root lists the users. SIGINT, SIGTERM or SIGHUP\n" +
			"flush, unmount and exit 0.\n\n" +
			"Examples:\n" +
			"   packdir mount --user alice /srv/mail/store /home/alice/Maildir\n" +
			"   packdir mount --durability full /srv/mail/store /srv/mail/users",
		OnUsageError: onUsageError,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "user", Usage: "mount this user's Maildir++ tree as the root"},
			&cli.UintFlag{Name: "uid", Value: uint(os.Getuid()), Usage: "owner of a user created by this mount"},
			&cli.UintFlag{Name: "gid", Value: uint(os.Getgid()), Usage: "group of a user created by this mount"},
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
	a, err := args(c, "STORE", "MOUNTPOINT")
	if err != nil {
		return err
	}
	storeDir, mnt := a[0], a[1]
	full, err := durability(c.String("durability"))
	if err != nil {
		return err
	}
	if n := c.Int("max-inodes"); n < 1 {
		return usagef("--max-inodes is at least 1, not %d", n)
	}
	if err := checkMountpoint(mnt); err != nil {
		return err
	}
	s, err := openOrInit(storeDir, full)
	if err != nil {
		return err
	}
	defer s.Close()
	if user := c.String("user"); user != "" {
		if err := ensureUser(s, user, uint32(c.Uint("uid")), uint32(c.Uint("gid"))); err != nil {
			return err
		}
	}
	log := logger()
	stopProfiling, err := startProfiling(c, log)
	if err != nil {
		return err
	}
	defer stopProfiling()
	sig := notifyStop()
	defer signal.Stop(sig)
	f, err := fs.Mount(s, mnt, fs.Options{User: c.String("user"), AllowOther: c.Bool("allow-other"), Debug: c.Bool("debug"), Logger: log, MaxInodes: c.Int("max-inodes")})
	if err != nil {
		return mountError(err, s, c.String("user"))
	}
	log.Info("mounted", "store", storeDir, "mountpoint", mnt, "user", c.String("user"))
	go unmountOnSignal(sig, f, mnt, log.Info)
	f.Wait()
	if err := s.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", storeDir, err)
	}
	log.Info("unmounted", "mountpoint", mnt)
	return nil
}

// notifyStop catches the signals that end the daemon. Until it is called
// a signal ends the process, and recovery, which is safe to interrupt,
// with it. From the mount on it must unmount: killed while go-fuse's own first
// request to the new mount is in flight, the process would hang in the
// kernel, waiting for an answer from itself, with the mount dead. SIGHUP
// is among them because closing the terminal that runs the daemon sends
// it. SIGPIPE is ignored for the same case: Go ends a program whose write
// to a closed stdout or stderr pipe fails (a `| tee` that died with the
// terminal), and the log line "unmounting" would be that write.
func notifyStop() chan os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
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

func openOrInit(dir string, full bool) (*backend.Store, error) {
	if !backend.Exists(dir) {
		if err := backend.Init(dir, backend.Config{}); err != nil {
			return nil, err
		}
	}
	// A mounted store compacts in the background (FORMAT.md, Compaction).
	s, err := backend.Open(dir, backend.Options{Logger: logger(), SyncAlways: full, AutoCompact: true})
	if errors.Is(err, backend.ErrInUse) {
		return nil, fmt.Errorf("store %s is already mounted by another packdir", dir)
	}
	return s, err
}

func ensureUser(s *backend.Store, name string, uid, gid uint32) error {
	if _, err := s.User(name); err == nil {
		return nil
	} else if !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	_, err := fs.AddUser(s, name, uid, gid)
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
// directory, and one that something is already mounted on.
func checkMountpoint(dir string) error {
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
	return nil
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
func unmountOnSignal(sig <-chan os.Signal, f *fs.FS, mnt string, info func(string, ...any)) {
	s := <-sig
	info("unmounting", "signal", s.String(), "mountpoint", mnt)
	for i := 0; i < 10; i++ {
		if err := f.Unmount(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	info("mountpoint busy; detaching it", "mountpoint", mnt)
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		info("detach failed", "err", err)
	}
}
