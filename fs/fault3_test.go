package fs

import (
	"bytes"
	"crypto/rand"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/maildir"
)

// writeUntil writes size random bytes to path in 1 MiB writes, as head
// -c or cp would, and returns the first error (from open, a write or
// close) and how many bytes were written before it.
func writeUntil(path string, size int) (int, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	written := 0
	for written < size {
		rand.Read(buf)
		k, err := f.Write(buf[:min(len(buf), size-written)])
		written += k
		if err != nil {
			f.Close()
			return written, err
		}
	}
	return written, f.Close()
}

// wantAllSealedAfterRemount unmounts (which seals what was written in
// place), mounts again and fails t if any file in new/ or cur/ is not a
// sealed message.
func wantAllSealedAfterRemount(t *testing.T) *backend.Store {
	t.Helper()
	s := remount(t)
	mnt := mountOf(t).mnt
	err := filepath.WalkDir(mnt, func(path string, d iofs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !maildir.IsMessageDir(filepath.Base(filepath.Dir(path))) {
			return err
		}
		if a, err := s.Getattr(lstat(t, path).Ino); err != nil || !a.Sealed {
			t.Errorf("after unmount, %s is not a sealed message (%v)", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFault3QuotaInPlaceWrite (issue 14, item 3): a message written
// straight into cur/ is held to its owner's quota as a delivery is: the
// write that would take the owner past it fails with EDQUOT, so does a
// truncate that grows a file past it, and so does the write of a second
// file while the first one, not sealed yet, holds the rest of the quota.
// Nothing over the quota is stored.
func TestFault3QuotaInPlaceWrite(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	uid := uint32(os.Getuid())
	const quota = 1 << 20
	must(t, s.SetQuota(uid, backend.Quota{Bytes: quota}))

	q := filepath.Join(mnt, "cur", "q:2,S")
	n, err := writeUntil(q, 50<<20)
	wantErrno(t, "writing 50 MB into cur/ with a 1 MiB quota", err, syscall.EDQUOT)
	if n > quota {
		t.Errorf("%d bytes written into cur/ before the error, past the quota of %d", n, quota)
	}
	wantErrno(t, "truncate of a file in cur/ past the quota", os.Truncate(q, 2*quota), syscall.EDQUOT)

	// Half the quota in one file not yet sealed, and a second file in new/
	// that would need more than the other half.
	half := filepath.Join(mnt, "new", "half")
	_, err = writeUntil(q, quota/2)
	must(t, err)
	_, err = writeUntil(half, quota/2+4096)
	wantErrno(t, "a second file in new/ past the quota the first one holds", err, syscall.EDQUOT)
	must(t, os.Remove(half))

	s = wantAllSealedAfterRemount(t)
	_, u, err := s.QuotaOf(uid)
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes > quota || u.Messages != 1 {
		t.Errorf("usage after the in-place writes: %d bytes in %d messages, want at most %d bytes in 1", u.Bytes, u.Messages, quota)
	}
	if st := lstat(t, q); st.Size != quota/2 {
		t.Errorf("%s: %d bytes, want %d", q, st.Size, quota/2)
	}
}

// TestFault3SizeLimitInPlaceWrite (issue 14, item 3): a message written
// straight into cur/ is held to the store's size limit as a delivery is:
// writes and truncates past it fail with EFBIG. A store whose containers
// are small holds messages only up to what one container holds, and so
// refuses larger writes in the same way.
func TestFault3SizeLimitInPlaceWrite(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		cfg   backend.Config
		limit int
	}{
		{"max-message-size", backend.Config{MaxMessageSize: 1 << 20}, 1 << 20},
		{"container-size", backend.Config{ContainerSize: 256 << 10}, 256 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			must(t, backend.Init(dir, c.cfg))
			mnt, _ := mountStore(t, dir)
			big := filepath.Join(mnt, "cur", "big:2,S")
			n, err := writeUntil(big, 2*c.limit)
			wantErrno(t, fmt.Sprintf("writing %d bytes into cur/", 2*c.limit), err, syscall.EFBIG)
			if n > c.limit {
				t.Errorf("%d bytes written into cur/ before the error, past the limit of %d", n, c.limit)
			}
			wantErrno(t, "truncate of a file in cur/ past the size limit", os.Truncate(big, int64(2*c.limit)), syscall.EFBIG)
			wantErrno(t, "fallocate in cur/ past the size limit", fallocate(big, 2*c.limit), syscall.EFBIG)
			wantAllSealedAfterRemount(t)
			if st := lstat(t, big); st.Size > int64(c.limit) {
				t.Errorf("%s: %d bytes, past the limit of %d", big, st.Size, c.limit)
			}
		})
	}
}

func fallocate(path string, size int) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fallocate(int(f.Fd()), 0, 0, int64(size))
}

// TestFault3RenameExchangeOversized (issue 14, item 3): RENAME_EXCHANGE
// that would put a message over the size limit into new/ or cur/ fails
// with EFBIG as a rename delivery does, whichever side names new/, and
// whether it exchanges the files or tmp/ and new/ themselves; both names
// stay as they were. A directory renamed to new/ or cur/ has its files
// sealed as a delivery would.
func TestFault3RenameExchangeOversized(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, backend.Init(dir, backend.Config{MaxMessageSize: 4096}))
	mnt, s := mountStore(t, dir)
	exchange := func(a, b string) error {
		return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	}
	bigBody := bytes.Repeat([]byte("b"), 8192)
	big := filepath.Join(mnt, "tmp", "big")
	writeFile(t, big, bigBody)
	small := deliver(t, mnt, "new", "small", []byte("Subject: small\n\n"))
	stay := func(what string) {
		t.Helper()
		checkContent(t, big, bigBody)
		checkContent(t, small, []byte("Subject: small\n\n"))
		if t.Failed() {
			t.Fatalf("after %s", what)
		}
	}

	wantErrno(t, "exchange of tmp/big and new/small", exchange(big, small), syscall.EFBIG)
	stay("exchange of tmp/big and new/small")
	wantErrno(t, "exchange of new/small and tmp/big", exchange(small, big), syscall.EFBIG)
	stay("exchange of new/small and tmp/big")
	tmp, newDir := filepath.Join(mnt, "tmp"), filepath.Join(mnt, "new")
	wantErrno(t, "exchange of tmp/ and new/", exchange(tmp, newDir), syscall.EFBIG)
	stay("exchange of tmp/ and new/")
	wantErrno(t, "exchange of new/ and tmp/", exchange(newDir, tmp), syscall.EFBIG)
	stay("exchange of new/ and tmp/")
	folder := filepath.Join(mnt, ".F")
	must(t, os.MkdirAll(filepath.Join(folder, "tmp"), 0o700))
	fbig := filepath.Join(folder, "tmp", "big")
	writeFile(t, fbig, bigBody)
	wantErrno(t, "rename of a tmp/ holding a big file to new/", os.Rename(filepath.Join(folder, "tmp"), filepath.Join(folder, "new")), syscall.EFBIG)
	checkContent(t, fbig, bigBody)

	// What fits is sealed on its way in.
	must(t, os.Remove(big))
	ok := filepath.Join(mnt, "tmp", "ok")
	writeFile(t, ok, []byte("Subject: ok\n\n"))
	must(t, exchange(tmp, newDir))
	ino := lstat(t, filepath.Join(mnt, "new", "ok")).Ino
	wantSealed(t, s, ino, "new/ok after exchanging tmp/ and new/")
	must(t, os.Remove(fbig))
	wantAllSealedAfterRemount(t)
}
