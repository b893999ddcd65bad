package backend

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Holding a file past its last name.
//
// A file unlinked (or renamed over) while a process has it open stays
// readable and writable through that descriptor until it is closed, as
// on a local filesystem: a program writes a temporary file in tmp/ and
// unlinks it at once, or Dovecot renames a new dovecot-uidlist over the
// one another process still writes. The store knows no descriptors; a
// caller that may still use an inode once its last name is gone holds it
// (Hold) until it no longer can (Release), and pins a sealed file's
// payload (Pin) so that its bytes stay readable.
//
// A held file whose last name goes is an orphan: gone from the index
// (from every listing, from quota, and from the next mount:
// removeOrphanSpool deletes the spool file of an inode the index does not
// hold, so a crash leaves nothing behind), but its attributes are kept in
// memory with a link count of 0, and a spooled one keeps its spool file.
// Getattr, Setattr, Spool and OpenSpool serve it until its last hold is
// released; a write to a sealed orphan copies its payload to a spool
// file, as for any sealed file. Then its spool file goes, once the op
// that dropped the inode is durable. Its bytes count in the disk's free
// space, as an open unlinked file's blocks do on ext4, and not in its
// owner's quota, as no spooled file does.

// holds are the inodes held, and the orphans among them.
type holds struct {
	mu      sync.Mutex
	count   map[uint64]int
	orphans map[uint64]*orphan
}

// orphan is a held file whose last name is gone.
type orphan struct {
	attr Attr   // Nlink 0; a spooled one's size and mtime are the spool file's
	seq  uint64 // the op that dropped the inode
}

// Hold keeps the spool file of inode ino, and its attributes, if its last
// name goes while held; holds are counted, in memory only.
func (s *Store) Hold(ino uint64) {
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	if s.holds.count == nil {
		s.holds.count = map[uint64]int{}
		s.holds.orphans = map[uint64]*orphan{}
	}
	s.holds.count[ino]++
}

// Release drops one hold of ino. Once none is left, an orphan's spool
// file is deleted: at once if the op that dropped the inode is durable,
// else once it is.
func (s *Store) Release(ino uint64) {
	s.holds.mu.Lock()
	if s.holds.count[ino]--; s.holds.count[ino] > 0 {
		s.holds.mu.Unlock()
		return
	}
	delete(s.holds.count, ino)
	o := s.holds.orphans[ino]
	delete(s.holds.orphans, ino)
	s.holds.mu.Unlock()
	if o == nil {
		return
	}
	s.sync.mu.Lock()
	durable := s.sync.durable >= o.seq
	s.sync.mu.Unlock()
	if !durable {
		s.dropSpoolAfter(o.seq, []uint64{ino})
		return
	}
	if err := os.Remove(s.spoolPath(ino)); err != nil && !os.IsNotExist(err) {
		s.log.Warn("cannot remove spool file", "ino", ino, "err", err)
	}
}

// keepOrphans makes orphans of the held files among those that op seq
// dropped from the index.
func (s *Store) keepOrphans(dropped []Attr, seq uint64) {
	if len(dropped) == 0 {
		return
	}
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	for _, a := range dropped {
		if s.holds.count[a.Ino] > 0 {
			a.Nlink = 0
			s.holds.orphans[a.Ino] = &orphan{attr: a, seq: seq}
		}
	}
}

// isOrphan reports whether ino is an orphan, whose spool file must stay.
func (s *Store) isOrphan(ino uint64) bool {
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	return s.holds.orphans[ino] != nil
}

// orphanAttr returns the attributes of orphan ino.
func (s *Store) orphanAttr(ino uint64) (Attr, bool) {
	s.holds.mu.Lock()
	o := s.holds.orphans[ino]
	var a Attr
	if o != nil {
		a = o.attr
	}
	s.holds.mu.Unlock()
	if o == nil {
		return a, false
	}
	if err := s.statSpool(&a); err != nil {
		s.log.Warn("cannot stat the spool file of an unlinked file", "ino", ino, "err", err)
	}
	return a, true
}

// spoolOrphan is Spool of orphan ino: its payload, pinned by the holder,
// is copied to a spool file (empty with truncate). No op is journaled:
// the index holds no inode to change, and after a crash the spool file is
// an orphan's, removed at open.
func (s *Store) spoolOrphan(ino uint64, truncate bool) error {
	a, ok := s.orphanAttr(ino)
	if !ok {
		return ErrNotFound
	}
	if !a.Sealed {
		return nil
	}
	m, err := s.OpenPayload(a.Payload)
	if err != nil {
		return err
	}
	if err := s.copyPayloadToSpool(ino, m, truncate); err != nil {
		return err
	}
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	if o := s.holds.orphans[ino]; o != nil {
		o.attr.Sealed, o.attr.Payload = false, [32]byte{}
		o.attr.Mtime = now()
	}
	return nil
}

// setattrOrphan is Setattr of orphan ino: the size and mtime on its spool
// file, which holds them, the rest in memory.
func (s *Store) setattrOrphan(ino uint64, a SetAttr) (Attr, error) {
	if a.Mask&SetSize != 0 {
		if err := s.spoolOrphan(ino, a.Size == 0); err != nil {
			return Attr{}, err
		}
	}
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	o := s.holds.orphans[ino]
	if o == nil {
		return Attr{}, ErrNotFound
	}
	path := s.spoolPath(ino)
	if a.Mask&SetSize != 0 {
		if err := os.Truncate(path, int64(a.Size)); err != nil {
			return Attr{}, fmt.Errorf("backend: truncate inode %d: %w", ino, err)
		}
	}
	if a.Mask&(SetAtime|SetMtime) != 0 && !o.attr.Sealed {
		if err := s.chtimesSpoolOrphan(path, o, a); err != nil {
			return Attr{}, err
		}
	}
	setOrphanAttrs(&o.attr, a)
	out := o.attr
	return out, s.statSpool(&out)
}

func (s *Store) chtimesSpoolOrphan(path string, o *orphan, a SetAttr) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	at, mt := time.Unix(0, o.attr.Atime), fi.ModTime()
	if a.Mask&SetAtime != 0 {
		at = time.Unix(0, a.Atime)
	}
	if a.Mask&SetMtime != 0 {
		mt = time.Unix(0, a.Mtime)
	}
	return os.Chtimes(path, at, mt)
}

// setOrphanAttrs applies the mode, owner and times of a to attributes
// kept in memory, as applySetattr does to an inode.
func setOrphanAttrs(o *Attr, a SetAttr) {
	if a.Mask&SetMode != 0 {
		o.Mode = o.Mode&ModeType | a.Mode&ModePerm
	}
	if a.Mask&SetUID != 0 {
		o.UID = a.UID
	}
	if a.Mask&SetGID != 0 {
		o.GID = a.GID
	}
	if a.Mask&SetAtime != 0 {
		o.Atime = a.Atime
	}
	if a.Mask&SetMtime != 0 {
		o.Mtime = a.Mtime // a sealed orphan's; a spooled one's is its file's
	}
	o.Ctime = now()
}

// dropOrphans forgets every hold when the store closes: no one is left
// to use an orphan, and its spool file goes with the dropped ones.
func (s *Store) dropOrphans() {
	s.holds.mu.Lock()
	for ino, o := range s.holds.orphans {
		s.dropSpoolAfter(o.seq, []uint64{ino})
	}
	s.holds.count, s.holds.orphans = nil, nil
	s.holds.mu.Unlock()
}
