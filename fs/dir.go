package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
)

// dirPage is how many entries one index read of a directory returns.
const dirPage = 1024

// Offsets of a listing before its entries; an entry's offset is its
// cookie (backend.MinCookie and up), after which a listing resumes.
const (
	offStart  = 0
	offDot    = 1
	offDotDot = 2
)

// dirHandle streams a directory from the index a page at a time, so that
// a folder of any size is listed without being held in memory. Entries
// come in cookie order and each is reported at its cookie: the kernel
// resumes a listing, on this handle or another (a cached listing partly
// reclaimed, a seekdir), after the last entry it took, wherever that is
// now, so entries made or removed meanwhile move nothing else.
type dirHandle struct {
	n  *node
	mu sync.Mutex

	page []backend.Dirent
	// pageAt is the store's Changes() from before page was read: while it
	// stays the same, the page's attributes are still true.
	pageAt uint64
	next   int    // index into page
	off    uint64 // offset of the last entry returned
	// after is where the next page starts: after the last entry
	// returned, by cookie and name, so that two names of one cookie are
	// both listed.
	after backend.DirPos
	done  bool
}

// OpendirHandle lets the kernel keep the listing it read in its page
// cache, across opens (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE): every change
// to a directory goes through this mount, and the kernel drops the cached
// listing of a directory it changes. A warm scan then reads no names from
// the daemon.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if _, err := n.store().Getattr(n.ino); err != nil {
		return nil, 0, n.errno(err, "opendir", "")
	}
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.off {
	case offStart:
		return d.emit(".", d.n.ino, syscall.S_IFDIR, offDot), 0
	case offDot:
		return d.emit("..", d.parentIno(), syscall.S_IFDIR, offDotDot), 0
	}
	if d.next == len(d.page) && !d.done {
		if errno := d.fetch(); errno != 0 {
			return nil, errno
		}
	}
	if d.next == len(d.page) {
		return nil, 0
	}
	e := d.page[d.next]
	off := entryOffset(d.page, d.next)
	d.next++
	d.after = e.Pos()
	return d.emit(e.Name, e.Ino, e.Mode&backend.ModeType, off), 0
}

// entryOffset is the offset reported for page[i]: its cookie, or one
// less if the next entry has the same cookie (ReadDir never ends a page
// between them), so that a listing resumed there lists this entry again
// rather than skip the next. A handle itself resumes by name as well.
func entryOffset(page []backend.Dirent, i int) uint64 {
	c := page[i].Cookie
	if i+1 < len(page) && page[i+1].Cookie == c {
		return c - 1
	}
	return c
}

func (d *dirHandle) emit(name string, ino uint64, mode uint32, off uint64) *fuse.DirEntry {
	d.off = off
	return &fuse.DirEntry{Name: name, Ino: ino, Mode: mode, Off: off}
}

// fetch reads the next page of entries after the last one returned.
func (d *dirHandle) fetch() syscall.Errno {
	at := d.n.store().Changes()
	page, err := d.n.store().ReadDir(d.n.ino, d.after, dirPage)
	if err != nil {
		return d.n.errno(err, "readdir", "")
	}
	d.page, d.pageAt, d.next, d.done = page, at, 0, len(page) < dirPage
	return 0
}

func (d *dirHandle) parentIno() uint64 {
	if _, p := d.n.Parent(); p != nil {
		if pn, ok := p.Operations().(*node); ok {
			return pn.ino
		}
	}
	return d.n.ino
}

// Seekdir goes to the start, to after "." or "..", or to after the
// entries whose cookie is at most off, with nothing to count: the kernel
// asks for an offset it was given, on this handle (seekdir) or on one
// that has read nothing yet (when it reads a listing from its cache,
// finds a page of it reclaimed and goes on without the cache).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.page, d.next, d.done = nil, 0, false
	d.off, d.after = off, backend.DirPos{}
	if off > offDotDot {
		d.after.Cookie = off
	}
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}

// Fsyncdir makes every change so far durable.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.errno(d.n.store().Sync(), "fsyncdir", "")
}

// Lookup serves READDIRPLUS for the entry just returned. Its attributes
// came with the page, in the same index read, and serve as they are if
// nothing was written to the index since: a lookup of each entry was
// half of the daemon's time in a cold scan. A spooled file's size is its
// spool file's, so it is looked up.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.mu.Lock()
	var a backend.Attr
	if d.next > 0 && d.page[d.next-1].Name == name {
		a = d.page[d.next-1].Attr
	}
	fresh := a.Ino != 0 && d.pageAt == d.n.store().Changes()
	d.mu.Unlock()
	if !fresh || !a.Sealed && a.Mode&backend.ModeType == backend.ModeRegular {
		return d.n.Lookup(ctx, name, out)
	}
	return d.n.newChild(ctx, a, out), 0
}
