package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Files have no handles.
//
// Open answers ENOSYS, on which the kernel opens every file of the mount
// by itself from then on: no OPEN, no FLUSH (see Flush) and no RELEASE,
// and the pages of a file stay cached across opens, which is right here
// because every change to a file comes through this mount. A warm read of
// a message is then no request at all, and a cold one is its READ alone.
// Create returns no handle either (with no OPEN the kernel would not send
// its RELEASE). So every READ, WRITE, FSYNC, SETATTR and LSEEK names only
// the inode, and is served from the index, the verified message
// (msgCache), or the spool file; see node_io.go.
//
// What handles told before, who still writes a file, nothing tells now:
// a delivery (rename or link into new/ or cur/) commits the file at once,
// and a file written in place in new/ or cur/ is committed once it has
// gone unchanged for commitIdle.

// Open answers ENOSYS: see above. O_TRUNC then comes as a SETATTR of the
// size, since go-fuse does not ask for atomic O_TRUNC.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

// Create makes a new spooled file (open with O_CREAT; with O_EXCL the
// kernel has already checked that the name is new). The file is empty,
// so O_TRUNC has nothing to do.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	uid, gid := n.owner(ctx)
	inMessageDir := n.isMessageDir()
	if inMessageDir {
		// A new message, as far as the quota goes, as for a delivery.
		if err := n.fsys.inPlace.check(n.store(), uid, 0); err != nil {
			return nil, nil, 0, n.errno(err, "create", name)
		}
	}
	a, err := n.store().Create(n.ino, name, mode, uid, gid)
	if err != nil {
		return nil, nil, 0, n.errno(err, "create", name)
	}
	child := n.newChild(ctx, a, out)
	if inMessageDir {
		n.fsys.inPlace.admit(n.store(), a.Ino, a.UID, 0) // checked above
		c := child.Operations().(*node)
		c.mu.Lock()
		c.armIdleLocked(n.ino, name)
		c.mu.Unlock()
	}
	return child, nil, 0, 0
}
