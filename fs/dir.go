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

// dirSeekWindow is how many recent entries a directory handle remembers
// so that seekdir back to them works without holding the directory.
const dirSeekWindow = 4 * dirPage

// dirHandle streams a directory from the index a page at a time, so that
// a folder of any size is listed without being held in memory. Offsets
// count entries from the start ("." is 1, ".." is 2).
type dirHandle struct {
	n  *node
	mu sync.Mutex

	page []backend.Dirent
	// pageAt is the store's Changes() from before page was read: while it
	// stays the same, the page's attributes are still true.
	pageAt uint64
	next   int    // index into page
	off    uint64 // offset of the last entry returned
	done   bool

	recent []recentEntry // last entries returned, for Seekdir
}

type recentEntry struct {
	off  uint64
	name string
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
	case 0:
		return d.emit(".", d.n.ino, syscall.S_IFDIR), 0
	case 1:
		return d.emit("..", d.parentIno(), syscall.S_IFDIR), 0
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
	d.next++
	return d.emit(e.Name, e.Ino, e.Mode&backend.ModeType), 0
}

func (d *dirHandle) emit(name string, ino uint64, mode uint32) *fuse.DirEntry {
	d.remember(name)
	return &fuse.DirEntry{Name: name, Ino: ino, Mode: mode, Off: d.off}
}

// remember counts name as returned.
func (d *dirHandle) remember(name string) {
	d.off++
	d.recent = append(d.recent, recentEntry{off: d.off, name: name})
	if len(d.recent) > dirSeekWindow {
		d.recent = append(d.recent[:0], d.recent[len(d.recent)-dirSeekWindow/2:]...)
	}
}

// fetch reads the next page of entries after the last one returned.
func (d *dirHandle) fetch() syscall.Errno {
	after := ""
	if d.off > 2 && len(d.recent) > 0 {
		after = d.recent[len(d.recent)-1].name
	}
	at := d.n.store().Changes()
	page, err := d.n.store().ReadDir(d.n.ino, after, dirPage)
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

// Seekdir goes to the start, to an entry returned recently, or else to
// the off-th entry counted from the start. The kernel asks a handle that
// has read nothing yet for an offset far into the listing when it reads
// the listing from its cache (OpendirHandle) and finds a page of it
// reclaimed: it goes on without the cache from where it was.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.page, d.next, d.done = nil, 0, false
	if off <= 2 {
		d.off = off
		d.recent = d.recent[:0]
		return 0
	}
	for i, e := range d.recent {
		if e.off == off {
			d.off = off
			d.recent = d.recent[:i+1]
			return 0
		}
	}
	d.off, d.recent = 2, d.recent[:0]
	for d.off < off {
		if d.next == len(d.page) {
			if d.done {
				return 0 // fewer entries now than off: at the end
			}
			if errno := d.fetch(); errno != 0 {
				return errno
			}
			continue
		}
		d.remember(d.page[d.next].Name)
		d.next++
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
