package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSideFiles: files at the Maildir root (Dovecot's, Courier's) are
// full POSIX files. Contract: "side files".
func TestSideFiles(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)

	t.Run("O_EXCL", func(t *testing.T) {
		p := filepath.Join(mnt, "dovecot.index.log")
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
		must(t, err)
		unix.Close(fd)
		_, err = unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
		wantErrno(t, "second O_EXCL create", err, syscall.EEXIST)
		// Without O_EXCL the existing file opens, untouched.
		writeFile(t, p, []byte("log"))
		fd, err = unix.Open(p, unix.O_RDWR|unix.O_CREAT, 0o600)
		must(t, err)
		unix.Close(fd)
		checkContent(t, p, []byte("log"))
	})

	t.Run("rename-over", func(t *testing.T) {
		list := filepath.Join(mnt, "dovecot-uidlist")
		lock := filepath.Join(mnt, "dovecot-uidlist.lock")
		writeFile(t, list, []byte("3 V1700000000 N1\n"))
		oldIno := lstat(t, list).Ino
		// Dovecot's dotlock: O_EXCL create, write, rename over the file.
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		must(t, err)
		want := []byte("3 V1700000000 N2\n1 :1700000000.M1P1.host\n")
		_, err = f.Write(want)
		must(t, err)
		must(t, f.Close())
		lockIno := lstat(t, lock).Ino
		// A reader holding the old file keeps reading the old bytes.
		old, err := os.Open(list)
		must(t, err)
		defer old.Close()
		must(t, os.Rename(lock, list))
		st := lstat(t, list)
		if st.Ino != lockIno || st.Nlink != 1 {
			t.Errorf("after rename-over: ino %d nlink %d, want the lock file's %d and 1", st.Ino, st.Nlink, lockIno)
		}
		if st.Ino == oldIno {
			t.Errorf("rename-over kept the old inode %d", oldIno)
		}
		checkContent(t, list, want)
		if _, err := os.Lstat(lock); !os.IsNotExist(err) {
			t.Errorf("lock file still there: %v", err)
		}
		b := make([]byte, 100)
		n, err := old.ReadAt(b, 0)
		if string(b[:n]) != "3 V1700000000 N1\n" {
			t.Errorf("open old file reads %q (%v) after rename-over", b[:n], err)
		}
	})

	t.Run("O_APPEND", func(t *testing.T) {
		p := filepath.Join(mnt, "dovecot.index.log.2")
		var fds []*os.File
		for i := 0; i < 2; i++ {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			must(t, err)
			defer f.Close()
			fds = append(fds, f)
		}
		var want []byte
		for i := 0; i < 6; i++ {
			rec := fmt.Sprintf("record %d from fd %d\n", i, i%2)
			_, err := fds[i%2].WriteString(rec)
			must(t, err)
			want = append(want, rec...)
		}
		checkContent(t, p, want)
	})

	t.Run("ftruncate", func(t *testing.T) {
		p := filepath.Join(mnt, "subscriptions")
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		must(t, err)
		defer f.Close()
		_, err = f.WriteString("INBOX\nLists.golang\n")
		must(t, err)
		must(t, f.Truncate(6))
		checkContent(t, p, []byte("INBOX\n"))
		must(t, f.Truncate(0))
		_, err = f.WriteAt([]byte("Trash\n"), 0)
		must(t, err)
		must(t, f.Sync())
		checkContent(t, p, []byte("Trash\n"))
	})

	t.Run("flock", func(t *testing.T) {
		p := filepath.Join(mnt, "dovecot.index")
		writeFile(t, p, []byte("index"))
		a, b := openRW(t, p), openRW(t, p) // two open file descriptions
		must(t, unix.Flock(a, unix.LOCK_EX|unix.LOCK_NB))
		wantErrno(t, "second LOCK_EX", unix.Flock(b, unix.LOCK_EX|unix.LOCK_NB), syscall.EWOULDBLOCK)
		wantErrno(t, "LOCK_SH under LOCK_EX", unix.Flock(b, unix.LOCK_SH|unix.LOCK_NB), syscall.EWOULDBLOCK)
		must(t, unix.Flock(a, unix.LOCK_UN))
		must(t, unix.Flock(b, unix.LOCK_SH|unix.LOCK_NB))
		must(t, unix.Flock(a, unix.LOCK_SH|unix.LOCK_NB)) // shared locks share
		wantErrno(t, "LOCK_EX under LOCK_SH", unix.Flock(a, unix.LOCK_EX|unix.LOCK_NB), syscall.EWOULDBLOCK)
	})

	t.Run("OFD", func(t *testing.T) {
		p := filepath.Join(mnt, "dovecot.index.cache")
		writeFile(t, p, bytes.Repeat([]byte("c"), 1000))
		a, b := openRW(t, p), openRW(t, p)
		wr := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		must(t, unix.FcntlFlock(uintptr(a), unix.F_OFD_SETLK, &wr))
		rd := unix.Flock_t{Type: unix.F_RDLCK, Start: 100, Len: 10}
		wantErrno(t, "OFD read lock under write lock", unix.FcntlFlock(uintptr(b), unix.F_OFD_SETLK, &rd), syscall.EAGAIN)
		probe := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 0}
		must(t, unix.FcntlFlock(uintptr(b), unix.F_OFD_GETLK, &probe))
		if probe.Type != unix.F_WRLCK || probe.Pid != -1 {
			t.Errorf("F_OFD_GETLK reports type %d pid %d, want F_WRLCK and -1", probe.Type, probe.Pid)
		}
		un := unix.Flock_t{Type: unix.F_UNLCK}
		must(t, unix.FcntlFlock(uintptr(a), unix.F_OFD_SETLK, &un))
		rd = unix.Flock_t{Type: unix.F_RDLCK, Start: 100, Len: 10}
		must(t, unix.FcntlFlock(uintptr(b), unix.F_OFD_SETLK, &rd))
		// Byte ranges: a write lock elsewhere in the file is fine.
		wr = unix.Flock_t{Type: unix.F_WRLCK, Start: 200, Len: 10}
		must(t, unix.FcntlFlock(uintptr(a), unix.F_OFD_SETLK, &wr))
	})

	t.Run("fcntl between processes", func(t *testing.T) {
		p := filepath.Join(mnt, "dovecot-uidlist.2")
		writeFile(t, p, []byte("uidlist"))
		fd := openRW(t, p)
		wr := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 0}
		must(t, unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &wr))
		out := lockHelper(t, p)
		want := fmt.Sprintf("getlk type=%d pid=%d; setlk %v", unix.F_WRLCK, os.Getpid(), syscall.EAGAIN)
		if out != want {
			t.Errorf("other process sees %q, want %q", out, want)
		}
		un := unix.Flock_t{Type: unix.F_UNLCK}
		must(t, unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &un))
		if out := lockHelper(t, p); out != fmt.Sprintf("getlk type=%d pid=0; setlk <nil>", unix.F_UNLCK) {
			t.Errorf("other process sees %q after unlock", out)
		}
	})
}

func openRW(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// lockHelper runs lockProbe in a child process on path and returns what
// it reports.
func lockHelper(t *testing.T, path string) string {
	t.Helper()
	return runHelper(t, "lock", path)
}

// lockProbe is the other process of the fcntl lock test: it probes and
// tries a write lock on the whole file, and reports.
func lockProbe(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	probe := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &probe); err != nil {
		return "", err
	}
	wr := unix.Flock_t{Type: unix.F_WRLCK}
	err = unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &wr)
	return fmt.Sprintf("getlk type=%d pid=%d; setlk %v", probe.Type, probe.Pid, err), nil
}

// TestRenameat2: RENAME_NOREPLACE and RENAME_EXCHANGE, which Dovecot and
// rsync use where the kernel offers them.
func TestRenameat2(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	cur := filepath.Join(mnt, "cur")
	a := deliver(t, mnt, "cur", "a:2,S", []byte("message a"))
	b := deliver(t, mnt, "cur", "b:2,S", []byte("message b"))
	ia, ib := lstat(t, a).Ino, lstat(t, b).Ino
	rename2 := func(from, to string, flags uint) error {
		return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, flags)
	}

	wantErrno(t, "RENAME_NOREPLACE onto a message", rename2(a, b, unix.RENAME_NOREPLACE), syscall.EEXIST)
	checkContent(t, a, []byte("message a"))
	checkContent(t, b, []byte("message b"))

	c := filepath.Join(cur, "c:2,S")
	must(t, rename2(a, c, unix.RENAME_NOREPLACE))
	if st := lstat(t, c); st.Ino != ia {
		t.Errorf("RENAME_NOREPLACE to a free name: ino %d, want %d", st.Ino, ia)
	}
	a = c

	must(t, rename2(a, b, unix.RENAME_EXCHANGE))
	checkContent(t, a, []byte("message b"))
	checkContent(t, b, []byte("message a"))
	if lstat(t, a).Ino != ib || lstat(t, b).Ino != ia {
		t.Errorf("RENAME_EXCHANGE did not swap the inodes")
	}

	// Across directories, and between a message and a side file.
	side := filepath.Join(mnt, "dovecot-keywords")
	writeFile(t, side, []byte("0 $Junk\n"))
	must(t, rename2(side, b, unix.RENAME_EXCHANGE))
	checkContent(t, side, []byte("message a"))
	checkContent(t, b, []byte("0 $Junk\n"))

	// And a file in tmp/ exchanged into cur/ is delivered.
	tmp := filepath.Join(mnt, "tmp", "d")
	writeFile(t, tmp, []byte("message d"))
	must(t, rename2(tmp, a, unix.RENAME_EXCHANGE))
	checkContent(t, a, []byte("message d"))
	checkContent(t, tmp, []byte("message b"))

	wantErrno(t, "RENAME_EXCHANGE with a missing target", rename2(a, filepath.Join(cur, "missing"), unix.RENAME_EXCHANGE), syscall.ENOENT)
	wantErrno(t, "RENAME_NOREPLACE|RENAME_EXCHANGE", rename2(a, b, unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE), syscall.EINVAL)
}
