package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/maildir"
)

type contextT = context.Context

// node is every inode of the tree: directory, file or symlink. go-fuse
// keeps one node per inode number, so hard links share it.
type node struct {
	gofs.Inode
	fsys *FS
	ino  uint64

	mu   sync.Mutex
	last backend.Attr // last attributes seen, for fstat of an unlinked file
	// idle is the file's idle commit to come, if it has one (node_io.go).
	idle *pendingCommit
	// pins are the payloads pinned for this file while it may be open
	// with no name left (see orphan.go).
	pins [][32]byte
	// holds counts the store's holds on this file's inode while it may
	// be open with no name left (see orphan.go).
	holds int
}

func (n *node) store() *backend.Store { return n.fsys.store }

// errno maps err for an operation on this node.
func (n *node) errno(err error, op, name string) syscall.Errno {
	return n.fsys.errnoOf(err, op, n.ino, name)
}

// newChild returns the go-fuse inode for attributes a, reusing the one
// that exists for a.Ino (hard links).
func (n *node) newChild(ctx context.Context, a backend.Attr, out *fuse.EntryOut) *gofs.Inode {
	child := &node{fsys: n.fsys, ino: a.Ino, last: a}
	in := n.NewInode(ctx, child, gofs.StableAttr{Mode: a.Mode & backend.ModeType, Ino: a.Ino})
	if a.Mode&backend.ModeType == backend.ModeRegular {
		n.fsys.evict.added(child)
	}
	n.fsys.fillAttr(a, &out.Attr)
	out.SetEntryTimeout(entryTimeout)
	out.SetAttrTimeout(attrTimeout)
	return in
}

// attr returns the node's attributes from the store, or the last ones
// seen if the inode is gone (an open file that was unlinked).
func (n *node) attr() (backend.Attr, error) {
	a, err := n.store().Getattr(n.ino)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.last = a
		return a, nil
	}
	if errors.Is(err, backend.ErrNotFound) && n.last.Ino != 0 {
		a = n.last
		a.Nlink = 0
		return a, nil
	}
	return a, err
}

func (f *FS) fillAttr(a backend.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Size = a.Size
	out.Blocks = (a.Size + 511) / 512
	out.Blksize = 4096
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	if a.Ino == backend.RootIno {
		out.Owner = fuse.Owner{Uid: f.rootUID, Gid: f.rootGID}
	}
	out.Atime, out.Atimensec = split(a.Atime)
	out.Mtime, out.Mtimensec = split(a.Mtime)
	out.Ctime, out.Ctimensec = split(a.Ctime)
}

func split(ns int64) (uint64, uint32) {
	return uint64(ns / 1e9), uint32(ns % 1e9)
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.attr()
	if err != nil {
		return n.errno(err, "getattr", "")
	}
	n.fsys.fillAttr(a, &out.Attr)
	out.SetTimeout(attrTimeout)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var set backend.SetAttr
	if m, ok := in.GetMode(); ok {
		set.Mask |= backend.SetMode
		set.Mode = m
	}
	if uid, ok := in.GetUID(); ok {
		set.Mask |= backend.SetUID
		set.UID = uid
	}
	if gid, ok := in.GetGID(); ok {
		set.Mask |= backend.SetGID
		set.GID = gid
	}
	if t, ok := in.GetATime(); ok {
		set.Mask |= backend.SetAtime
		set.Atime = t.UnixNano()
	}
	if t, ok := in.GetMTime(); ok {
		set.Mask |= backend.SetMtime
		set.Mtime = t.UnixNano()
	}
	if size, ok := in.GetSize(); ok {
		set.Mask |= backend.SetSize
		set.Size = size
		// A new size spools a sealed message: as for a write, under the
		// file's lock, and committed once idle (see changed).
		l := n.fsys.fileLock(n.ino)
		l.Lock()
		defer l.Unlock()
		defer n.changed()
		if err := n.admitSize(size); err != nil {
			return n.errno(err, "setattr", "")
		}
	}
	a, err := n.store().Setattr(n.ino, set)
	if err != nil {
		return n.errno(err, "setattr", "")
	}
	n.fsys.fillAttr(a, &out.Attr)
	out.SetTimeout(attrTimeout)
	return 0
}

// Readlink returns a symlink's target.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	a, err := n.attr()
	if err != nil {
		return nil, n.errno(err, "readlink", "")
	}
	return []byte(a.Target), 0
}

// isMessageDir reports whether this directory is a new/ or cur/.
func (n *node) isMessageDir() bool {
	name, parent := n.Parent()
	return parent != nil && maildir.IsMessageDir(name)
}

// messageDir returns the new/ or cur/ that names this file, and the
// name; nil if no name of it is there, or it has none.
func (n *node) messageDir() (*node, string) {
	name, parent := n.Parent()
	if parent == nil {
		return nil, ""
	}
	if p, ok := parent.Operations().(*node); ok && p.isMessageDir() {
		return p, name
	}
	return nil, ""
}

// owner is who owns a new inode: the caller, as on a local filesystem,
// except that what root creates in a user's tree belongs to that user, so
// that mail delivered by a root daemon stays the user's.
func (n *node) owner(ctx context.Context) (uint32, uint32) {
	caller, ok := fuse.FromContext(ctx)
	if !ok || caller.Uid != 0 || n.ino == backend.RootIno {
		if ok {
			return caller.Uid, caller.Gid
		}
		return 0, 0
	}
	a, err := n.attr()
	if err != nil {
		return 0, 0
	}
	return a.UID, a.GID
}

// Setxattr fails as on a filesystem without extended attributes: the
// store keeps none, and EOPNOTSUPP is what cp -a, rsync -X and tar
// --xattrs take as "not supported here" (go-fuse's default is ENODATA).
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

// Getxattr answers ENOSYS, on which the kernel answers EOPNOTSUPP itself
// from then on and stops asking: without it, every write(2) to a file
// opened for writing cost a GETXATTR round trip for security.capability
// (whether the write must drop file capabilities).
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Removexattr answers ENOSYS too: EOPNOTSUPP, as for setxattr.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOSYS
}

// Flush answers ENOSYS, on which the kernel stops sending FLUSH on close
// for this mount: a round trip per close(2) saved (tar, an MUA reading a
// folder). No file needs it: spooled bytes are written through at once,
// and locks are the kernel's (EnableLocks is off), so close has nothing
// to tell the daemon.
func (n *node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}
