package fs

import (
	"sync"
	"syscall"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/maildir"
)

// Sealing: a file in new/ or cur/ is a message, sealed into a container.
// A file comes in by a delivery (rename or link, sealed before the call
// returns), by a directory renamed to new/ or cur/ (its files sealed
// likewise), or by being written there in place (sealed once idle, or at
// unmount). Whatever comes in is held to the limits a delivery meets: a
// write in place fails with EFBIG or EDQUOT where the seal would, and a
// seal that fails all the same (a full store) is logged and tried again
// at unmount; stats and fsck list what stays unsealed.

// seal commits file ino if it is spooled, and reports whether it was:
// whether this is a delivery. It holds the file's lock, so that no write
// (changeSpool) is between reading the spool file and dropping it.
func (f *FS) seal(ino uint64) (bool, error) {
	l := f.fileLock(ino)
	l.Lock()
	defer l.Unlock()
	defer f.inPlace.done(ino)
	a, err := f.store.Getattr(ino)
	if err != nil {
		return false, err
	}
	if a.Mode&backend.ModeType != backend.ModeRegular || a.Sealed {
		return false, nil
	}
	return true, f.store.Commit(ino)
}

// admitGrowth holds a file written in place in new/ or cur/ to what its
// seal will be held to, when a change would take it from a (its
// attributes before the change) to size bytes: the store's size limit
// and its owner's quota, counting the owner's other files that wait for
// their seal as used. The caller holds the file's lock.
func (n *node) admitGrowth(a backend.Attr, size uint64) error {
	if dir, _ := n.messageDir(); dir == nil || size <= a.Size {
		return nil
	}
	return n.fsys.inPlace.admit(n.store(), n.ino, a.UID, size)
}

// admitSize spools the file for a new size (a truncate) and holds it to
// size as admitGrowth does. The caller holds the file's lock.
func (n *node) admitSize(size uint64) error {
	a, err := n.store().Getattr(n.ino)
	if err == nil && a.Sealed {
		err = n.store().Spool(n.ino, size == 0)
	}
	if err != nil {
		return err
	}
	return n.admitGrowth(a, size)
}

// growth is the size a change of length bytes at off would give a file,
// or 0 if it gives none.
func growth(off, length uint64) uint64 {
	if end := off + length; end >= off {
		return end
	}
	return ^uint64(0) // past any limit
}

// failedSeals are the files whose seal failed while mounted, by inode,
// with the name they had: unmount tries them once more.
type failedSeals struct {
	mu    sync.Mutex
	files map[uint64]failedSeal
}

type failedSeal struct {
	dir  uint64
	name string
	// late is set for a seal that failed while unmounting, which there
	// is no point in trying again at once.
	late bool
}

// sealFailed logs a failed seal of a file written in place, with its
// inode and name, and notes it for unmount.
func (f *FS) sealFailed(ino uint64, p *pendingCommit, err error) {
	late := f.idle.stopping.Load()
	f.log.Error("not sealed: the message written in place stays a spooled file (packdir stats and fsck list it)",
		"ino", ino, "dir", p.dir, "name", p.name, "err", err)
	f.failed.mu.Lock()
	defer f.failed.mu.Unlock()
	if f.failed.files == nil {
		f.failed.files = map[uint64]failedSeal{}
	}
	f.failed.files[ino] = failedSeal{dir: p.dir, name: p.name, late: late}
}

// resealFailed tries the seals that failed while mounted once more, at
// unmount (mail may have been deleted since), for the files still under
// the name they failed under: a rename into new/ or cur/ since sealed the
// file or failed itself. What fails again is logged, and stays listed by
// stats and fsck.
func (f *FS) resealFailed() {
	f.failed.mu.Lock()
	files := f.failed.files
	f.failed.files = nil
	f.failed.mu.Unlock()
	for ino, at := range files {
		if a, err := f.store.Lookup(at.dir, at.name); at.late || err != nil || a.Ino != ino {
			continue
		}
		if _, err := f.seal(ino); err != nil {
			f.log.Error("not sealed at unmount: the message written in place stays a spooled file (packdir stats and fsck list it)",
				"ino", ino, "dir", at.dir, "name", at.name, "err", err)
		}
	}
}

// sealIncoming seals what a rename of name in n to newName in np brings
// into new/ or cur/: a spooled file (a delivery), or the spooled files of
// a directory that gets the name new or cur; with RENAME_EXCHANGE, what
// comes back the other way too. It reports whether it sealed anything:
// whether the rename must be durable when it returns.
func (n *node) sealIncoming(name string, np *node, newName string, exchange bool) (bool, syscall.Errno) {
	delivered, errno := np.sealInto(n, name, newName)
	if errno != 0 || !exchange {
		return delivered, errno
	}
	back, errno := n.sealInto(np, newName, name)
	return delivered || back, errno
}

// sealInto seals what entry name of directory from brings into this
// directory as newName.
func (n *node) sealInto(from *node, name, newName string) (bool, syscall.Errno) {
	var delivered bool
	if n.isMessageDir() {
		var errno syscall.Errno
		if delivered, errno = from.commitChild(name); errno != 0 {
			return false, errno
		}
	}
	if maildir.IsMessageDir(newName) {
		sealed, errno := from.sealDir(name)
		return delivered || sealed, errno
	}
	return delivered, 0
}

// sealDir seals the spooled files of directory name, which a rename is
// about to call new or cur. It checks them all against the size limit and
// their owners' quotas first, so that where one would fail, as a delivery
// of it would, every file stays as it was.
func (n *node) sealDir(name string) (bool, syscall.Errno) {
	d, err := n.store().Lookup(n.ino, name)
	if err != nil || !d.IsDir() {
		return false, n.errno(err, "rename", name)
	}
	files, err := n.fsys.spooledIn(d.Ino)
	if err == nil {
		err = n.fsys.inPlace.admitAll(n.store(), files)
	}
	for i := 0; err == nil && i < len(files); i++ {
		_, err = n.fsys.seal(files[i].Ino)
	}
	return len(files) > 0, n.errno(err, "rename", name)
}

// spooledIn returns the attributes of the spooled files in directory dir.
func (f *FS) spooledIn(dir uint64) ([]backend.Attr, error) {
	var files []backend.Attr
	for after := (backend.DirPos{}); ; {
		page, err := f.store.ReadDir(dir, after, dirPage)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if e.Mode&backend.ModeType != backend.ModeRegular || e.Attr.Sealed || e.Attr.Ino == 0 {
				continue
			}
			a, err := f.store.Getattr(e.Ino) // the size of its spool file
			if err != nil {
				return nil, err
			}
			if !a.Sealed {
				files = append(files, a)
			}
		}
		if len(page) < dirPage {
			return files, nil
		}
		after = page[len(page)-1].Pos()
	}
}
