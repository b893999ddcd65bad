package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	a, err := n.store().Lookup(n.ino, name)
	if err != nil {
		return nil, n.errno(err, "lookup", name)
	}
	return n.newChild(ctx, a, out), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	uid, gid := n.owner(ctx)
	a, err := n.store().Mkdir(n.ino, name, mode, uid, gid)
	if err != nil {
		return nil, n.errno(err, "mkdir", name)
	}
	return n.newChild(ctx, a, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	uid, gid := n.owner(ctx)
	a, err := n.store().Symlink(n.ino, name, target, uid, gid)
	if err != nil {
		return nil, n.errno(err, "symlink", name)
	}
	return n.newChild(ctx, a, out), 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.errno(n.store().Rmdir(n.ino, name), "rmdir", name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	pin := n.pinChild(name)
	defer pin.settle()
	return n.errno(n.store().Unlink(n.ino, name), "unlink", name)
}

// Rename moves a name. Into new/ or cur/ it is a Maildir delivery: a
// spooled file is committed first, and the call returns once the message
// and its name are durable.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	var bflags uint32
	switch flags {
	case 0:
	case unix.RENAME_NOREPLACE:
		bflags = backend.RenameNoReplace
	case unix.RENAME_EXCHANGE:
		bflags = backend.RenameExchange
	default:
		return syscall.EINVAL
	}
	// Only a rename that delivers a spooled file waits for the disk; a
	// sealed message renamed (a flag change, a move) is durable within the
	// sync interval, as DESIGN.md allows, which saves an fsync per flag.
	delivered, errno := n.sealIncoming(name, np, newName, bflags == backend.RenameExchange)
	if errno != 0 {
		return errno
	}
	var pin *pin
	if bflags != backend.RenameExchange {
		pin = np.pinChild(newName) // the name renamed over
	}
	err := n.store().Rename(n.ino, name, np.ino, newName, bflags)
	pin.settle()
	if err != nil {
		return n.errno(err, "rename", name)
	}
	if delivered {
		return n.errno(n.store().Sync(), "rename", name)
	}
	return 0
}

// Link gives a file another name. Into new/ or cur/ it is a Maildir
// delivery, as for Rename.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	var delivered bool
	if n.isMessageDir() {
		var errno syscall.Errno
		if delivered, errno = t.commit(); errno != 0 {
			return nil, errno
		}
	}
	a, err := n.store().Link(t.ino, n.ino, name)
	if err != nil {
		return nil, n.errno(err, "link", name)
	}
	if delivered {
		if err := n.store().Sync(); err != nil {
			return nil, n.errno(err, "link", name)
		}
	}
	return n.newChild(ctx, a, out), 0
}

// commitChild commits the file called name in this directory, if it is a
// spooled file, and reports whether it was: a delivery.
func (n *node) commitChild(name string) (bool, syscall.Errno) {
	if child := n.GetChild(name); child != nil {
		if c, ok := child.Operations().(*node); ok {
			return c.commit()
		}
	}
	a, err := n.store().Lookup(n.ino, name)
	if err != nil {
		return false, n.errno(err, "rename", name)
	}
	if a.Mode&backend.ModeType != backend.ModeRegular || a.Sealed {
		return false, 0 // a flag change or a move: nothing to seal
	}
	delivered, err := n.fsys.seal(a.Ino)
	return delivered, n.errno(err, "commit", name)
}

// commit seals this file if it is spooled, and reports whether it was:
// whether this is a delivery.
func (n *node) commit() (bool, syscall.Errno) {
	delivered, err := n.fsys.seal(n.ino)
	return delivered, n.errno(err, "commit", "")
}
