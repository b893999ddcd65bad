package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// fileStep is one change to an open file, made both on the mount and on
// a model of the file's bytes.
type fileStep struct {
	name  string
	do    func(t *testing.T, fd int, path string)
	model func(b []byte) []byte
}

func pwriteStep(data string, off int) fileStep {
	return fileStep{
		name: "pwrite " + data,
		do: func(t *testing.T, fd int, path string) {
			if n, err := unix.Pwrite(fd, []byte(data), int64(off)); err != nil || n != len(data) {
				t.Fatalf("pwrite: %d, %v", n, err)
			}
		},
		model: func(b []byte) []byte {
			if end := off + len(data); end > len(b) {
				b = append(b, make([]byte, end-len(b))...)
			}
			copy(b[off:], data)
			return b
		},
	}
}

func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

func ftruncateStep(size int) fileStep {
	return fileStep{
		name:  "ftruncate",
		do:    func(t *testing.T, fd int, path string) { must(t, unix.Ftruncate(fd, int64(size))) },
		model: func(b []byte) []byte { return resize(b, size) },
	}
}

func truncateStep(size int) fileStep {
	return fileStep{
		name:  "truncate",
		do:    func(t *testing.T, fd int, path string) { must(t, unix.Truncate(path, int64(size))) },
		model: func(b []byte) []byte { return resize(b, size) },
	}
}

func appendStep(data string) fileStep {
	return fileStep{
		name: "O_APPEND write",
		do: func(t *testing.T, fd int, path string) {
			afd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND, 0)
			must(t, err)
			defer unix.Close(afd)
			// An offset given to pwrite is ignored with O_APPEND on Linux.
			if n, err := unix.Write(afd, []byte(data)); err != nil || n != len(data) {
				t.Fatalf("append write: %d, %v", n, err)
			}
		},
		model: func(b []byte) []byte { return append(b, data...) },
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTmpFileWritable: a file in tmp/ (and a side file, which is spooled
// the same way) is a private, fully writable file: random writes, O_APPEND,
// truncate up and down, each visible at once to stat and to another
// descriptor. Contract: "create in tmp/, write, fsync, close".
func TestTmpFileWritable(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	steps := []fileStep{
		pwriteStep("hello world", 0),
		pwriteStep("HELLO", 0),
		pwriteStep("!", 20), // leaves a hole
		pwriteStep("xyz", 9),
		appendStep("tail\n"),
		ftruncateStep(5),
		ftruncateStep(8), // grows with zeros
		truncateStep(3),
		truncateStep(70000), // across pages
		pwriteStep("end", 69997),
		appendStep("after\n"),
		pwriteStep(string(bytes.Repeat([]byte("0123456789abcdef"), 8192)), 4000), // 128 KiB in one call
		ftruncateStep(0),
		pwriteStep("From: a@example.org\n\nbody\n", 0),
	}
	for _, c := range []struct{ name, path string }{
		{"tmp", filepath.Join(mnt, "tmp", "1700000000.M1P1.host")},
		{"side", filepath.Join(mnt, "dovecot.index.cache")},
	} {
		path := c.path
		t.Run(c.name, func(t *testing.T) {
			fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
			must(t, err)
			defer func() {
				if fd >= 0 {
					unix.Close(fd)
				}
			}()
			var model []byte
			for i, s := range steps {
				s.do(t, fd, path)
				model = s.model(model)
				checkFile(t, fd, path, model, i, s.name)
			}
			must(t, unix.Fsync(fd))
			must(t, unix.Close(fd))
			fd = -1
			checkContent(t, path, model)
		})
	}
}

// checkFile compares what fstat, stat and a new descriptor show of path
// with want.
func checkFile(t *testing.T, fd int, path string, want []byte, step int, what string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if st.Size != int64(len(want)) {
		t.Fatalf("step %d (%s): fstat size %d, want %d", step, what, st.Size, len(want))
	}
	if st := lstat(t, path); st.Size != int64(len(want)) {
		t.Fatalf("step %d (%s): stat size %d, want %d", step, what, st.Size, len(want))
	}
	got := make([]byte, len(want)+10)
	n, err := unix.Pread(fd, got, 0)
	must(t, err)
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("step %d (%s): pread got %q, want %q", step, what, abbrev(got[:n]), abbrev(want))
	}
	if b := readFile(t, path); !bytes.Equal(b, want) {
		t.Fatalf("step %d (%s): new descriptor reads %q, want %q", step, what, abbrev(b), abbrev(want))
	}
}

// mmapWrites are what mmapWrite writes into a file of mmapSize dots.
var mmapWrites = []struct {
	off  int
	data string
}{{0, "first page"}, {4090, "straddles a page"}, {mmapSize - 4, "last"}}

const mmapSize = 3*4096 + 100

func mmapWant() []byte {
	b := bytes.Repeat([]byte{'.'}, mmapSize)
	for _, w := range mmapWrites {
		copy(b[w.off:], w.data)
	}
	return b
}

// TestMmapShared: a shared writable mapping of a tmp/ file and of a side
// file (Dovecot maps its index files) writes through to the file, as seen
// by a new descriptor after msync and munmap. The mapping is used in a
// child process (see runHelper).
func TestMmapShared(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	for _, c := range []struct{ name, path string }{
		{"tmp", filepath.Join(mnt, "tmp", "1700000001.M2P2.host")},
		{"side", filepath.Join(mnt, "dovecot.index")},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeFile(t, c.path, bytes.Repeat([]byte{'.'}, mmapSize))
			if got := runHelper(t, "mmap", c.path); got != "ok" {
				t.Errorf("mmap helper: %s", got)
			}
			checkContent(t, c.path, mmapWant())
		})
	}
}

// mmapWrite maps path shared and writable, writes mmapWrites, syncs and
// unmaps it; then maps it again read-only from a new descriptor and
// compares.
func mmapWrite(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	m, err := unix.Mmap(fd, 0, mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return "", err
	}
	for _, w := range mmapWrites {
		copy(m[w.off:], w.data)
	}
	err = unix.Msync(m, unix.MS_SYNC)
	if uerr := unix.Munmap(m); err == nil {
		err = uerr
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ro, err := unix.Mmap(int(f.Fd()), 0, mmapSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return "", err
	}
	defer unix.Munmap(ro)
	if !bytes.Equal(ro, mmapWant()) {
		return fmt.Sprintf("read-only mapping holds %q", abbrev(ro)), nil
	}
	return "ok", nil
}
