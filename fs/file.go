package fs

import (
	"context"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// spoolFile is an open spooled file: tmp/ files, side files, and messages
// being changed. Reads and writes go straight to the spool file.
type spoolFile struct {
	n      *node
	f      *os.File
	writer bool

	mu       sync.Mutex
	released bool
}

func (sf *spoolFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(sf.f.Fd(), off, len(dest)), 0
}

func (sf *spoolFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := sf.n.quotaErrno(); errno != 0 {
		return 0, errno
	}
	n, err := syscall.Pwrite(int(sf.f.Fd()), data, off)
	if err != nil {
		return uint32(max(n, 0)), sf.n.errno(err, "write", "")
	}
	return uint32(n), 0
}

func (sf *spoolFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	a, err := sf.n.attr()
	if err != nil {
		return sf.n.errno(err, "fstat", "")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(sf.f.Fd()), &st); err != nil {
		return sf.n.errno(err, "fstat", "")
	}
	a.Size = uint64(st.Size)
	a.Mtime = st.Mtim.Nano()
	sf.n.fsys.fillAttr(a, &out.Attr)
	out.SetTimeout(attrTimeout)
	return 0
}

// Fsync makes the file's bytes and every change so far durable. The spool
// file and the journal are two files: their fsyncs run at once, so the
// call waits for the longer, not for both in turn.
func (sf *spoolFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	journal := make(chan error, 1)
	go func() { journal <- sf.n.store().Sync() }()
	err := sf.f.Sync()
	if jerr := <-journal; err == nil {
		err = jerr
	}
	return sf.n.errno(err, "fsync", "")
}

func (sf *spoolFile) Flush(ctx context.Context) syscall.Errno { return 0 }

func (sf *spoolFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return sf.n.errno(unix.Fallocate(int(sf.f.Fd()), mode, int64(off), int64(size)), "fallocate", "")
}

func (sf *spoolFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(int(sf.f.Fd()), int64(off), int(whence))
	if err != nil {
		return 0, gofsErrno(err)
	}
	return uint64(n), 0
}

// Release closes the handle. When the last writer of a file named in new/
// or cur/ closes (a message written in place by cp, tar or rsync), the
// file is committed; durable within the store's sync interval, as a
// closed but not fsynced file on ext4 is.
func (sf *spoolFile) Release(ctx context.Context) syscall.Errno {
	sf.mu.Lock()
	if sf.released {
		sf.mu.Unlock()
		return 0
	}
	sf.released = true
	sf.mu.Unlock()
	sf.f.Close()
	if !sf.writer {
		return 0
	}
	n := sf.n
	n.mu.Lock()
	n.writers--
	last := n.writers == 0
	delivered := last && n.commitOnClose
	if last {
		n.commitOnClose = false
	}
	n.mu.Unlock()
	if last && (delivered || n.inMessageDir()) {
		_, errno := n.commit()
		return errno
	}
	return 0
}

func gofsErrno(err error) syscall.Errno {
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return syscall.EIO
}
