package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

// TestFault12UnlinkedWhileOpenTmp: a file in tmp/ unlinked while open
// stays readable and writable through its descriptor until it is closed,
// as on ext4: writes, reads with no page cached, fstat (link count 0),
// ftruncate, fchmod and fsync; once closed, its spool file goes and the
// index holds nothing of it. Before, the first write after the unlink
// failed with ENOENT (issue 14, item 12). The same holds for a message
// being written in place in cur/, which is spooled the same way (and
// must then not be committed), and for a sealed message opened for
// writing, whose bytes are copied to a spool file at the first write.
func TestFault12UnlinkedWhileOpenTmp(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	spooled := spooledFiles(t, s) // the folders' maildirfolder files
	created := func(p string) func(t *testing.T) (*os.File, uint64, string) {
		return func(t *testing.T) (*os.File, uint64, string) {
			f, ino := createRW(t, p)
			head := "Subject: first\n\n"
			pwrite(t, int(f.Fd()), head, 0)
			return f, ino, head
		}
	}
	sealed := func(t *testing.T) (*os.File, uint64, string) {
		body := message("sealed", 3000)
		p := deliver(t, mnt, "cur", "1700000000.M3P1.sealed:2,S", body)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		must(t, err)
		t.Cleanup(func() { f.Close() })
		ino := lstat(t, p).Ino
		wantSealed(t, s, ino, "delivered message")
		return f, ino, string(body)
	}
	for _, c := range []struct {
		name string
		open func(t *testing.T) (*os.File, uint64, string)
		path string
	}{
		{"tmp", created(filepath.Join(mnt, "tmp", "1700000000.M1P1.unlinked")), "tmp/1700000000.M1P1.unlinked"},
		{"cur written in place", created(filepath.Join(mnt, "cur", "1700000000.M2P1.unlinked:2,S")), "cur/1700000000.M2P1.unlinked:2,S"},
		{"cur sealed", sealed, "cur/1700000000.M3P1.sealed:2,S"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, ino, head := c.open(t)
			must(t, os.Remove(filepath.Join(mnt, c.path)))
			useUnlinked(t, int(f.Fd()), head)
			must(t, f.Close())
			waitGone(t, s, ino, spooled)
		})
	}
	if st, err := s.Stats(); err != nil || st.Messages != 0 {
		t.Errorf("%d messages stored (%v), want none: an unlinked file was committed", st.Messages, err)
	}
}

// TestFault12UnlinkedWhileOpenSideFile: the same for a side file, unlinked
// or renamed over (Dovecot's dotlocked rewrite of dovecot-uidlist) while
// another process has the old file open for writing.
func TestFault12UnlinkedWhileOpenSideFile(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	spooled := spooledFiles(t, s)
	p := filepath.Join(mnt, "dovecot-uidlist")
	for _, how := range []string{"unlink", "rename-over"} {
		t.Run(how, func(t *testing.T) {
			f, ino := createRW(t, p)
			fd := int(f.Fd())
			old := "3 V1700000000 N1\n"
			pwrite(t, fd, old, 0)
			switch how {
			case "unlink":
				must(t, os.Remove(p))
			case "rename-over":
				writeFile(t, p+".lock", []byte("3 V1700000000 N2\n"))
				must(t, os.Rename(p+".lock", p))
				t.Cleanup(func() { os.Remove(p) })
			}
			useUnlinked(t, fd, old)
			must(t, f.Close())
			if how == "rename-over" {
				waitGone(t, s, ino, spooled+1) // the new dovecot-uidlist
				checkContent(t, p, []byte("3 V1700000000 N2\n"))
			} else {
				waitGone(t, s, ino, spooled)
			}
		})
	}
}

// createRW creates path for reading and writing and returns the file,
// closed when the test ends (before it unmounts), and its inode number.
func createRW(t *testing.T, path string) (*os.File, uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	must(t, unix.Fstat(int(f.Fd()), &st))
	return f, st.Ino
}

func pwrite(t *testing.T, fd int, s string, off int64) {
	t.Helper()
	if n, err := unix.Pwrite(fd, []byte(s), off); err != nil || n != len(s) {
		t.Fatalf("pwrite %d bytes at %d: %d, %v", len(s), off, n, err)
	}
}

// useUnlinked uses fd, whose file holds head and has no name left, as a
// program would: it writes, reads back with nothing cached, stats,
// truncates and fsyncs.
func useUnlinked(t *testing.T, fd int, head string) {
	t.Helper()
	body := "more bytes, written after the last name went\n"
	pwrite(t, fd, body, int64(len(head)))
	want := head + body
	wantRead(t, fd, want, "after a write")
	wantStat(t, fd, len(want))

	must(t, unix.Ftruncate(fd, 8))
	want = want[:8]
	wantRead(t, fd, want, "after ftruncate")
	wantStat(t, fd, len(want))
	must(t, unix.Ftruncate(fd, 100))
	want += string(make([]byte, 92))
	wantRead(t, fd, want, "after ftruncate up")
	pwrite(t, fd, "tail", 100)
	want += "tail"
	must(t, unix.Fsync(fd))
	wantRead(t, fd, want, "after fsync")
	wantStat(t, fd, len(want))
	must(t, unix.Fchmod(fd, 0o640))
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if st.Mode&0o7777 != 0o640 {
		t.Errorf("fchmod 640 of the unlinked file: mode %o", st.Mode)
	}
}

// wantRead reads all of fd from the daemon, none from the page cache,
// and fails t unless it is want.
func wantRead(t *testing.T, fd int, want, when string) {
	t.Helper()
	must(t, unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED))
	got := make([]byte, len(want)+100)
	n, err := unix.Pread(fd, got, 0)
	if err != nil || !bytes.Equal(got[:n], []byte(want)) {
		t.Errorf("pread %s: %q, %v; want %q", when, got[:max(n, 0)], err, want)
	}
}

func wantStat(t *testing.T, fd int, size int) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if st.Nlink != 0 || st.Size != int64(size) {
		t.Errorf("fstat: nlink %d size %d, want 0 and %d", st.Nlink, st.Size, size)
	}
}

// waitGone waits, once the unlinked file ino is closed, for the kernel
// to forget it and the store to delete its spool file; the index must
// not know it either, and spooled files are left.
func waitGone(t *testing.T, s *backend.Store, ino uint64, spooled int) {
	t.Helper()
	spool := filepath.Join(s.Dir(), "spool", fmt.Sprintf("%016x", ino))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(spool); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool file of inode %d still there 10 s after the file was closed", ino)
		}
	}
	if a, err := s.Getattr(ino); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("inode %d after close: %+v, %v; want not found", ino, a, err)
	}
	if n := spooledFiles(t, s); n != spooled {
		t.Errorf("%d files spooled after close, want %d", n, spooled)
	}
}

func spooledFiles(t *testing.T, s *backend.Store) int {
	t.Helper()
	st, err := s.Stats()
	must(t, err)
	return st.SpooledFiles
}
