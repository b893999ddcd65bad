package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

// Reads and writes of files, which have no handles (see node_open.go):
// fh is always nil.

// Read serves a sealed message from its verified bytes (msgCache), and a
// spooled file from its spool file. A file committed or spooled between
// the stat and the read is read again the other way.
func (n *node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	var err error
	for range 3 {
		var a backend.Attr
		if a, err = n.attr(); err != nil {
			break
		}
		if !a.Sealed {
			var k int
			if k, err = n.readSpool(dest, off); err == nil {
				return fuse.ReadResultData(dest[:k]), 0
			}
			if errors.Is(err, backend.ErrNotFound) {
				continue // committed since the stat, and its spool file dropped
			}
			break
		}
		var b []byte
		b, err = n.fsys.messages.get(a.Payload, func() (*backend.Message, error) {
			m, err := n.store().OpenMessage(n.ino)
			if errors.Is(err, backend.ErrNotFound) && a.Nlink == 0 {
				return n.store().OpenPayload(a.Payload) // unlinked while open: see orphan.go
			}
			return m, err
		})
		if errors.Is(err, backend.ErrInvalid) {
			continue // spooled since the stat: a writer is changing it
		}
		if err != nil {
			break
		}
		if off >= int64(len(b)) {
			return fuse.ReadResultData(nil), 0
		}
		return fuse.ReadResultData(b[off:min(off+int64(len(dest)), int64(len(b)))]), 0
	}
	return nil, n.errno(err, "read", "")
}

func (n *node) readSpool(dest []byte, off int64) (int, error) {
	f, err := n.store().OpenSpool(n.ino, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	k, err := f.ReadAt(dest, off)
	if err == io.EOF {
		err = nil
	}
	return k, err
}

// Write writes to the file's spool file, copying a sealed message there
// first (copy-on-write), so that every name of the inode sees the new
// bytes and other inodes that share the payload keep theirs.
func (n *node) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := n.quotaErrno(); errno != 0 {
		return 0, errno
	}
	var k int
	errno := n.changeSpool("write", growth(uint64(off), uint64(len(data))), func(f *os.File) error {
		var err error
		k, err = f.WriteAt(data, off)
		return err
	})
	return uint32(k), errno
}

// Allocate is fallocate(2), on the spool file.
func (n *node) Allocate(ctx context.Context, fh gofs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	var end uint64
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
		end = growth(off, size)
	}
	return n.changeSpool("fallocate", end, func(f *os.File) error {
		return unix.Fallocate(int(f.Fd()), mode, int64(off), int64(size))
	})
}

// fileLock returns the lock that serializes the changes to file ino's
// bytes and its commit, so that no write lands in a spool file between
// its commit reading it and dropping it. It is the inode's, not the
// node's: the kernel may forget a node (memory pressure, drop_caches) and
// look the inode up again, as a new node, while the first one's idle
// commit is still to come.
func (f *FS) fileLock(ino uint64) *sync.Mutex {
	return &f.fileLocks[ino%uint64(len(f.fileLocks))]
}

// changeSpool runs change on the file's spool file, spooling a sealed
// message first, and notes the change; end is the size the change would
// give the file, if it grows it, which a file in new/ or cur/ is held to
// (admitGrowth). The file's lock, which seal holds too, keeps the file
// from being sealed, and its spool file dropped, between the two.
func (n *node) changeSpool(op string, end uint64, change func(*os.File) error) syscall.Errno {
	l := n.fsys.fileLock(n.ino)
	l.Lock()
	defer l.Unlock()
	a, err := n.store().Getattr(n.ino)
	if err == nil && a.Sealed {
		if err = n.store().Spool(n.ino, false); err == nil {
			defer n.changed() // sealed again once idle, even if the change fails
		}
	}
	if err == nil {
		err = n.admitGrowth(a, end)
	}
	if err == nil {
		// Bytes written to a spool file are new data: they may not take
		// the store's reserve (ENOSPC before the disk is full).
		err = n.store().CheckSpace()
	}
	if err != nil {
		return n.errno(err, op, "")
	}
	f, err := n.store().OpenSpool(n.ino, os.O_WRONLY)
	if err != nil {
		return n.errno(err, op, "")
	}
	err = change(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	n.changed()
	return n.errno(err, op, "")
}

// Fsync of a directory (fsyncdir) or of a file makes every change so far
// durable, as Dovecot and mutt expect of ext4; of a spooled file, its
// bytes too. The spool file and the journal are two files: their fsyncs
// run at once, so the call waits for the longer, not for both in turn.
func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	f, err := n.openSpooled()
	if err != nil {
		return n.errno(err, "fsync", "")
	}
	if f == nil {
		return n.errno(n.store().Sync(), "fsync", "")
	}
	defer f.Close()
	journal := make(chan error, 1)
	go func() { journal <- n.store().Sync() }()
	err = f.Sync()
	if jerr := <-journal; err == nil {
		err = jerr
	}
	return n.errno(err, "fsync", "")
}

// openSpooled opens the spool file of a spooled file for reading, and
// returns nil for anything else.
func (n *node) openSpooled() (*os.File, error) {
	a, err := n.attr()
	if err != nil || a.Sealed || a.Mode&backend.ModeType != backend.ModeRegular {
		return nil, err
	}
	f, err := n.store().OpenSpool(n.ino, os.O_RDONLY)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, nil // sealed or removed since the stat
	}
	return f, err
}

// Lseek answers SEEK_DATA and SEEK_HOLE (the kernel answers the others):
// from the spool file, which may have holes, or for a sealed message,
// which has none.
func (n *node) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	f, err := n.openSpooled()
	if err != nil {
		return 0, n.errno(err, "lseek", "")
	}
	if f != nil {
		defer f.Close()
		k, err := unix.Seek(int(f.Fd()), int64(off), int(whence))
		if err != nil {
			return 0, gofsErrno(err)
		}
		return uint64(k), 0
	}
	a, err := n.attr()
	if err != nil {
		return 0, n.errno(err, "lseek", "")
	}
	if off >= a.Size {
		return 0, syscall.ENXIO
	}
	if whence == unix.SEEK_HOLE {
		return a.Size, 0
	}
	return off, 0
}

func gofsErrno(err error) syscall.Errno {
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return syscall.EIO
}

// commitIdle is how long a file in new/ or cur/ that was created or
// changed there must go unchanged before it is committed. Without handles
// there is no close to tell when its writer is done (cp, tar and rsync
// write messages in place); a closed file is then durable within about
// this plus the store's sync interval, as a closed but not fsynced file
// on ext4 is within its commit interval.
const commitIdle = time.Second

// changed notes a change to the file's bytes and, for a file in new/ or
// cur/, arms its idle commit.
func (n *node) changed() {
	if p, name := n.messageDir(); p != nil {
		n.mu.Lock()
		n.armIdleLocked(p.ino, name)
		n.mu.Unlock()
	}
}

// pendingCommit is the idle commit to come of a file changed in new/ or
// cur/.
type pendingCommit struct {
	timer   *time.Timer
	changed time.Time // the file's last change
	// dir and name are the directory and the name the file was last
	// changed under.
	dir  uint64
	name string
}

// armIdleLocked (re)starts the wait for the file's idle commit, noting
// the name in new/ or cur/ it was changed under. The caller holds n.mu.
func (n *node) armIdleLocked(dir uint64, name string) {
	if n.idle == nil {
		n.fsys.idle.add(n)
		n.idle = &pendingCommit{timer: time.AfterFunc(commitIdle, n.idleCommit)}
	}
	n.idle.changed = time.Now()
	n.idle.dir, n.idle.name = dir, name
}

// idleCommit commits a file named in new/ or cur/ once it has gone
// unchanged for commitIdle; a file moved elsewhere meanwhile stays
// spooled.
func (n *node) idleCommit() {
	n.mu.Lock()
	p := n.idle
	if wait := commitIdle - time.Since(p.changed); wait > 0 && !n.fsys.idle.stopping.Load() {
		p.timer.Reset(wait)
		n.mu.Unlock()
		return
	}
	n.idle = nil
	n.mu.Unlock()
	n.commitIdleNow(p)
}

// commitIdleNow seals the file unless it has left new/ and cur/; a seal
// that fails is logged and noted (sealFailed), never dropped.
func (n *node) commitIdleNow(p *pendingCommit) {
	defer n.fsys.idle.done(n)
	if !n.stillInMessageDir(p) {
		n.fsys.inPlace.done(n.ino)
		return
	}
	if _, err := n.fsys.seal(n.ino); err != nil {
		n.fsys.sealFailed(n.ino, p, err)
	}
}

// stillInMessageDir reports whether the file is still named in new/ or
// cur/ when its idle commit comes: by where its node is, or by the name
// it was last changed under, which is all there is once the kernel has
// forgotten the node.
func (n *node) stillInMessageDir(p *pendingCommit) bool {
	if dir, _ := n.messageDir(); dir != nil {
		return true
	}
	a, err := n.store().Lookup(p.dir, p.name)
	return err == nil && a.Ino == n.ino
}

// idleCommits are the files waiting for their idle commit.
type idleCommits struct {
	mu       sync.Mutex
	nodes    map[*node]bool
	running  sync.WaitGroup
	stopping atomic.Bool
}

func (c *idleCommits) add(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes == nil {
		c.nodes = map[*node]bool{}
	}
	c.nodes[n] = true
	c.running.Add(1)
}

func (c *idleCommits) done(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, n)
	c.running.Done()
}

// flush commits every waiting file now, once the kernel has let go of
// the mount, so that an unmount leaves no message written in place
// uncommitted and does not wait out commitIdle.
func (c *idleCommits) flush() {
	c.stopping.Store(true)
	c.mu.Lock()
	var waiting []*node
	for n := range c.nodes {
		waiting = append(waiting, n)
	}
	c.mu.Unlock()
	for _, n := range waiting {
		n.mu.Lock()
		p := n.idle
		stopped := p != nil && p.timer.Stop()
		if stopped {
			n.idle = nil
		}
		n.mu.Unlock()
		if stopped {
			n.commitIdleNow(p)
		}
	}
	c.running.Wait()
}
