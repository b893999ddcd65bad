package fs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFault13ModeZero: mode 0000 is a mode like any other. A file created
// with it (in tmp/, written in place in cur/, a side file), a directory
// made with it (at the root, inside a folder) and a message chmodded to
// it show exactly no permission bits, also once the kernel has dropped
// what it cached (a remount), and a second uid cannot read such a
// message. go-fuse turns mode 0 into 0644 (0755) unless told not to, so
// that a file its owner locked became readable by others (issue 14,
// item 13; pjdfstest open/26).
func TestFault13ModeZero(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root: a second uid reads through the mount")
	}
	mnt, s := mountT(t, Options{AllowOther: true})
	opened := map[string]string{
		"tmp":          filepath.Join(mnt, "tmp", "1700000000.M1P1.zero"),
		"cur in place": filepath.Join(mnt, "cur", "1700000000.M2P1.zero:2,S"),
		"side file":    filepath.Join(mnt, "dovecot-uidlist"),
	}
	for _, p := range opened {
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0)
		must(t, err)
		_, err = unix.Write(fd, []byte("Subject: zero\n\nmode 0000\n"))
		must(t, err)
		must(t, unix.Close(fd))
	}
	dirs := map[string]string{
		"dir at the root":    filepath.Join(mnt, "zero-dir"),
		"dir in a folder":    filepath.Join(mnt, ".Trash", "zero-dir"),
		"folder at the root": filepath.Join(mnt, ".Zero"),
	}
	for _, p := range dirs {
		must(t, unix.Mkdir(p, 0))
	}
	// A message its owner locked: readable by others before the chmod.
	open := deliver(t, mnt, "cur", "1700000000.M3P1.open:2,S", message("open", 3000))
	locked := deliver(t, mnt, "cur", "1700000000.M4P1.locked:2,S", message("locked", 3000))
	// Only the message's mode may keep uid 65534 out.
	for _, p := range []string{filepath.Dir(mnt), mnt, filepath.Join(mnt, "cur")} {
		must(t, unix.Chmod(p, 0o755))
	}
	must(t, unix.Chmod(open, 0o644))
	must(t, unix.Chmod(locked, 0))
	waitSealed(t, s, lstat(t, opened["cur in place"]).Ino)

	check := func(when string) {
		t.Helper()
		for what, p := range opened {
			if st := lstat(t, p); st.Mode != unix.S_IFREG {
				t.Errorf("%s: %s created with mode 0000 has mode %o, want %o", when, what, st.Mode, unix.S_IFREG)
			}
		}
		for what, p := range dirs {
			if st := lstat(t, p); st.Mode != unix.S_IFDIR {
				t.Errorf("%s: %s made with mode 0000 has mode %o, want %o", when, what, st.Mode, unix.S_IFDIR)
			}
		}
		if st := lstat(t, locked); st.Mode != unix.S_IFREG {
			t.Errorf("%s: message chmodded to 000 has mode %o, want %o", when, st.Mode, unix.S_IFREG)
		}
		if out, err := catAsNobody(open); err != nil {
			t.Fatalf("%s: uid 65534 cannot read a 0644 message (the test's path is not open to it): %v: %s", when, err, abbrev([]byte(out)))
		}
		out, err := catAsNobody(locked)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("%s: uid 65534 reading a message of mode 000: %v, %q; want EACCES", when, err, abbrev([]byte(out)))
		}
	}
	check("at once")
	// Let the kernel forget everything it cached: it must ask again.
	remount(t, Options{AllowOther: true})
	check("after a remount")
}

// catAsNobody reads path as uid and gid 65534 and returns what cat
// printed, and its error.
func catAsNobody(path string) (string, error) {
	cmd := exec.Command("cat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
