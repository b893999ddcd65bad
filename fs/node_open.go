package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// spoolFlags are the open(2) flags passed on to a spool file.
const spoolFlags = os.O_RDONLY | os.O_WRONLY | os.O_RDWR | os.O_APPEND

func writable(flags uint32) bool {
	return flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 || flags&syscall.O_TRUNC != 0
}

// Open opens a file. A sealed message opened for reading is served from
// its verified bytes, loaded on the first read, and cached by the kernel; opened for writing or
// truncated, it is first copied to the spool (copy-on-write), so the
// inode and all its hard links see the new bytes and other messages that
// share the payload keep theirs.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if writable(flags) {
		return n.openWritable(flags)
	}
	a, err := n.store().Getattr(n.ino)
	if err != nil {
		return nil, 0, n.errno(err, "open", "")
	}
	if !a.Sealed {
		sf, errno := n.openSpool(flags)
		return sf, 0, errno
	}
	return &messageFile{n: n}, fuse.FOPEN_KEEP_CACHE, 0
}

// openWritable opens a file for writing, copying a sealed message to the
// spool first. It counts the writer before it looks at the file, under the
// lock that commit holds, so that a file is never committed, and its spool
// file dropped, under a writer that is just opening it.
func (n *node) openWritable(flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.writers++
	sf, errno := n.openWritableLocked(flags)
	if errno != 0 {
		n.writers--
		return nil, 0, errno
	}
	return sf, 0, 0
}

func (n *node) openWritableLocked(flags uint32) (*spoolFile, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0
	if err := n.store().Spool(n.ino, trunc); err != nil {
		return nil, n.errno(err, "open", "")
	}
	f, err := n.store().OpenSpool(n.ino, int(flags)&spoolFlags)
	if err != nil {
		return nil, n.errno(err, "open", "")
	}
	if trunc {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, n.errno(err, "open", "")
		}
	}
	return &spoolFile{n: n, f: f, writer: true}, 0
}

// openSpool opens this file's spool file for reading.
func (n *node) openSpool(flags uint32) (*spoolFile, syscall.Errno) {
	f, err := n.store().OpenSpool(n.ino, int(flags)&spoolFlags)
	if err != nil {
		return nil, n.errno(err, "open", "")
	}
	return &spoolFile{n: n, f: f}, 0
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
	// The file is new and empty: O_TRUNC would only move its mtime past
	// the one just reported to the kernel, which caches it.
	fh, _, errno := child.Operations().(*node).openWritable(flags &^ syscall.O_TRUNC)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return child, fh, 0, 0
}
