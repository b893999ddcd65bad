package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
)

// spoolFlags are the open(2) flags passed on to a spool file.
const spoolFlags = os.O_RDONLY | os.O_WRONLY | os.O_RDWR | os.O_APPEND

func writable(flags uint32) bool {
	return flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 || flags&syscall.O_TRUNC != 0
}

// Open opens a file. A sealed message opened for reading is served from
// its verified bytes and cached by the kernel; opened for writing or
// truncated, it is first copied to the spool (copy-on-write), so the
// inode and all its hard links see the new bytes and other messages that
// share the payload keep theirs.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	a, err := n.store().Getattr(n.ino)
	if err != nil {
		return nil, 0, n.errno(err, "open", "")
	}
	if a.Sealed && !writable(flags) {
		m, err := n.store().OpenMessage(n.ino)
		if err != nil {
			return nil, 0, n.errno(err, "open", "")
		}
		return &messageFile{m: m}, fuse.FOPEN_KEEP_CACHE, 0
	}
	if a.Sealed {
		if err := n.store().Spool(n.ino, flags&syscall.O_TRUNC != 0); err != nil {
			return nil, 0, n.errno(err, "open", "")
		}
	}
	sf, errno := n.openSpool(flags)
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 && !a.Sealed {
		if err := sf.f.Truncate(0); err != nil {
			sf.Release(ctx)
			return nil, 0, gofs.ToErrno(err)
		}
	}
	return sf, 0, 0
}

// openSpool opens this file's spool file for a new handle.
func (n *node) openSpool(flags uint32) (*spoolFile, syscall.Errno) {
	f, err := n.store().OpenSpool(n.ino, int(flags)&spoolFlags)
	if err != nil {
		return nil, n.errno(err, "open", "")
	}
	sf := &spoolFile{n: n, f: f, writer: flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0}
	if sf.writer {
		n.mu.Lock()
		n.writers++
		n.mu.Unlock()
	}
	return sf, 0
}

// Create makes a new spooled file and opens it (open with O_CREAT; with
// O_EXCL the kernel has already checked that the name is new).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	uid, gid := n.owner(ctx)
	a, err := n.store().Create(n.ino, name, mode, uid, gid)
	if err != nil {
		return nil, nil, 0, n.errno(err, "create", name)
	}
	child := n.newChild(ctx, a, out)
	sf, errno := child.Operations().(*node).openSpool(flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return child, sf, 0, 0
}

// isRegular reports whether attributes a are those of a regular file.
func isRegular(a backend.Attr) bool { return a.Mode&backend.ModeType == backend.ModeRegular }
