package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// Attr is what stat(2) shows of an inode.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // type and permission bits
	UID, GID            uint32
	Nlink               uint32
	Size                uint64
	Atime, Mtime, Ctime int64 // Unix nanoseconds
	Sealed              bool  // a message whose bytes are immutable in a container
	// Payload is a sealed message's checksum (SHA-256 of its bytes), which
	// names the bytes: two inodes with the same Payload hold the same bytes.
	Payload [32]byte
	Target  string
}

// IsDir reports whether a is a directory.
func (a Attr) IsDir() bool { return a.Mode&ModeType == ModeDir }

// Dirent is one directory entry.
type Dirent struct {
	Name string
	// Cookie is where the entry sorts in its directory, the same for as
	// long as the name is there: the offset to resume a listing after it
	// (MinCookie to MaxCookie; two names may share one).
	Cookie uint64
	Ino    uint64
	Mode   uint32 // type bits only are meaningful
	// Attr is the inode's attributes, read with the name, as Getattr
	// would return them except that a spooled file's size and mtime are
	// the index's; Attr.Ino is 0 if the inode is missing (see Check).
	Attr Attr
}

// SetAttr says what Setattr changes; Mask is a set of record.Set* bits.
type SetAttr struct {
	Mask         uint32
	Mode         uint32
	UID, GID     uint32
	Atime, Mtime int64
	Size         uint64
}

// Setattr mask bits.
const (
	SetMode  = record.SetMode
	SetUID   = record.SetUID
	SetGID   = record.SetGID
	SetAtime = record.SetAtime
	SetMtime = record.SetMtime
	SetSize  = record.SetSize
)

// Rename flags.
const (
	RenameNoReplace = record.RenameNoReplace
	RenameExchange  = record.RenameExchange
)

// User is a user of the store: the owner of one Maildir++ tree.
type User struct {
	Name     string
	Ino      uint64 // the root directory of the user's tree
	UID, GID uint32
}

func now() int64 { return time.Now().UnixNano() }

// mutate runs build and applies the op it returns in one index
// transaction, journaling the op. build may read the index, allocate an
// inode number with nextIno, and veto the op with an error.
func (s *Store) mutate(build func(x ix) (*record.Op, error)) (*record.Op, error) {
	s.mu.Lock()
	op, seq, err := s.mutateLocked(build)
	s.mu.Unlock()
	if err == nil && s.opts.SyncAlways {
		err = s.sync.wait(s, seq)
	}
	return op, err
}

// mutateLocked runs one op; an op that frees or keeps space may use the
// reserve, any other needs the reserve whole (see reserve.go).
func (s *Store) mutateLocked(build func(x ix) (*record.Op, error)) (*record.Op, uint64, error) {
	var op *record.Op
	var fx effects
	try := func() error {
		fx = effects{}
		return s.updateLocked(func(x ix) error {
			var err error
			if op, err = build(x); err != nil {
				return err
			}
			if !keepsSpace(op.Code) {
				if err := s.CheckSpace(); err != nil {
					return err
				}
			}
			return s.applyLocked(x, op, &fx)
		})
	}
	err := try()
	if s.retryable(err) && op != nil && keepsSpace(op.Code) && s.releaseReserve() {
		err = try()
	}
	if err != nil {
		return nil, 0, err
	}
	s.keepOrphans(fx.unlinked, s.seq)
	s.dropSpoolAfter(s.seq, fx.dropSpool)
	return op, s.seq, nil
}

// applyLocked applies op and journals it.
func (s *Store) applyLocked(x ix, op *record.Op, fx *effects) error {
	if op.Time == 0 {
		op.Time = now()
	}
	if err := apply(x, op, fx); err != nil {
		return err
	}
	_, err := s.appendLocked(x, record.TypeOp, record.AppendOp(nil, op))
	return err
}

// keepsSpace reports whether ops with code add no data to the store, only
// a record to the journal: deleting, moving and flagging mail.
func keepsSpace(code record.OpCode) bool {
	switch code {
	case record.OpUnlink, record.OpRename, record.OpSetattr:
		return true
	}
	return false
}

func nextIno(x ix) uint64 { return x.metaUint64(keyNextIno) }

// Getattr returns the attributes of ino, or of the held file ino was
// until its last name went (link count 0; see Hold).
func (s *Store) Getattr(ino uint64) (Attr, error) {
	var a Attr
	err := s.db.View(func(tx *bolt.Tx) error {
		n, err := ix{tx}.inode(ino)
		if err != nil {
			return err
		}
		a = n.attr(ino)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		if o, ok := s.orphanAttr(ino); ok {
			return o, nil
		}
	}
	if err != nil {
		return a, err
	}
	return a, s.statLiveSpool(&a)
}

// statLiveSpool is statSpool for an inode the index holds, where a
// missing spool file may be damage (spoolGone), not a seal meanwhile.
func (s *Store) statLiveSpool(a *Attr) error {
	missing, err := s.statSpoolFile(a)
	if missing {
		return s.spoolGone(a.Ino)
	}
	return err
}

// statSpool fills in size and times of a spooled file from its spool
// file, which is authoritative for them.
func (s *Store) statSpool(a *Attr) error {
	_, err := s.statSpoolFile(a)
	return err
}

// statSpoolFile is statSpool that also reports a missing spool file.
func (s *Store) statSpoolFile(a *Attr) (missing bool, err error) {
	if a.Sealed || a.Mode&ModeType != ModeRegular {
		return false, nil
	}
	fi, err := os.Lstat(s.spoolPath(a.Ino)) // a link planted in spool/ is not followed
	if os.IsNotExist(err) {
		return true, nil // dropped meanwhile: the index's record is the last word
	}
	if err != nil {
		return false, fmt.Errorf("backend: spool of inode %d: %w", a.Ino, err)
	}
	a.Size = uint64(fi.Size())
	a.Mtime = fi.ModTime().UnixNano()
	return false, nil
}

func (n *inode) attr(ino uint64) Attr {
	a := Attr{Ino: ino, Mode: n.Mode, UID: n.UID, GID: n.GID, Nlink: n.Nlink, Size: n.Size,
		Atime: n.Atime, Mtime: n.Mtime, Ctime: n.Ctime, Sealed: n.sealed(), Payload: n.Payload, Target: n.Target}
	if n.isDir() {
		a.Nlink = 2 + n.Subdirs
		a.Size = 4096
	}
	return a
}

// Lookup returns the attributes of name in directory parent.
func (s *Store) Lookup(parent uint64, name string) (Attr, error) {
	var a Attr
	if len(name) > MaxNameLen {
		return a, ErrNameTooLong // as on ext4: no such name can exist
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		d, ok, err := x.dirent(parent, name)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := x.dir(parent); err != nil {
				return err
			}
			return ErrNotFound
		}
		n, err := x.inode(d.Ino)
		if err != nil {
			return &IndexError{Reason: fmt.Sprintf("entry %q of directory %d points to missing inode %d", name, parent, d.Ino)}
		}
		a = n.attr(d.Ino)
		return nil
	})
	if err != nil {
		return a, err
	}
	return a, s.statLiveSpool(&a)
}

// Pos is the place in a listing just after e.
func (e Dirent) Pos() DirPos { return DirPos{Cookie: e.Cookie, Name: e.Name} }

// DirPos is a place in a directory's listing: after the entry Cookie,
// Name, or, without a Name, after every entry whose cookie is at most
// Cookie (the zero DirPos is the start). A place stays where it is while
// entries are made and removed around it, even the entry it names.
type DirPos struct {
	Cookie uint64
	Name   string
}

// ReadDir returns, in cookie order, up to max entries of directory dir
// after the place after, and more if the last of them shares its cookie
// with the next: a page never ends between two entries whose cookie is
// the same, so that a caller can see them and report an offset that
// resumes before them both. Each call is its own snapshot, so a directory
// of any size streams without holding the index.
func (s *Store) ReadDir(dir uint64, after DirPos, max int) ([]Dirent, error) {
	var out []Dirent
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		if _, err := x.dir(dir); err != nil {
			return err
		}
		prefix := inoKey(dir)
		c := tx.Bucket(bucketDirents).Cursor()
		k, v := seekAfter(c, dir, after)
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			cookie := direntCookie(k)
			if len(out) >= max && (len(out) == 0 || cookie != out[len(out)-1].Cookie) {
				break
			}
			d, err := decodeDirent(v)
			if err != nil {
				return err
			}
			e := Dirent{Name: direntName(k), Cookie: cookie, Ino: d.Ino, Mode: d.Mode}
			if n, err := x.inode(d.Ino); err == nil {
				e.Attr = n.attr(d.Ino)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// seekAfter moves c to the first entry of directory dir after the place
// after and returns its key and value; past dir's entries, or nil, if
// there is none.
func seekAfter(c *bolt.Cursor, dir uint64, after DirPos) ([]byte, []byte) {
	switch {
	case after.Name != "":
		at := direntKey(dir, after.Cookie, after.Name)
		k, v := c.Seek(at)
		if bytes.Equal(k, at) {
			return c.Next()
		}
		return k, v
	case after.Cookie >= MaxCookie:
		return nil, nil // an offset past every cookie: the end
	}
	return c.Seek(direntKey(dir, after.Cookie+1, ""))
}

// Mkdir creates directory name in parent.
func (s *Store) Mkdir(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return s.create(parent, name, ModeDir|mode&ModePerm, uid, gid)
}

// Create creates an empty spooled file name in parent.
func (s *Store) Create(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return s.create(parent, name, ModeRegular|mode&ModePerm, uid, gid)
}

func (s *Store) create(parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	var spool string
	op, err := s.mutate(func(x ix) (*record.Op, error) {
		op := &record.Op{Code: record.OpCreate, Parent: parent, Name: name, Ino: nextIno(x), Mode: mode, UID: uid, GID: gid}
		if _, err := x.freeName(parent, name); err != nil {
			return nil, err
		}
		if mode&ModeType == ModeRegular {
			// The spool file exists before the op that refers to it.
			spool = s.spoolPath(op.Ino)
			f, err := openFile(spool, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, fmt.Errorf("backend: %w", err)
			}
			f.Close()
		}
		return op, nil
	})
	if err != nil {
		if spool != "" {
			os.Remove(spool)
		}
		return Attr{}, err
	}
	return s.Getattr(op.Ino)
}

// Symlink creates a symbolic link name in parent.
func (s *Store) Symlink(parent uint64, name, target string, uid, gid uint32) (Attr, error) {
	op, err := s.mutate(func(x ix) (*record.Op, error) {
		return &record.Op{Code: record.OpSymlink, Parent: parent, Name: name, Ino: nextIno(x), Target: target, UID: uid, GID: gid}, nil
	})
	if err != nil {
		return Attr{}, err
	}
	return s.Getattr(op.Ino)
}

// Link gives file ino another name, newName in newParent.
func (s *Store) Link(ino, newParent uint64, newName string) (Attr, error) {
	if _, err := s.mutate(func(x ix) (*record.Op, error) {
		return &record.Op{Code: record.OpLink, Parent: newParent, Name: newName, Ino: ino}, nil
	}); err != nil {
		return Attr{}, err
	}
	return s.Getattr(ino)
}

// Unlink removes the name of a non-directory.
func (s *Store) Unlink(parent uint64, name string) error {
	return s.remove(parent, name, false)
}

// Rmdir removes an empty directory.
func (s *Store) Rmdir(parent uint64, name string) error {
	return s.remove(parent, name, true)
}

func (s *Store) remove(parent uint64, name string, isDir bool) error {
	_, err := s.mutate(func(x ix) (*record.Op, error) {
		d, ok, err := x.dirent(parent, name)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, ErrNotFound
		case isDir && d.Mode&ModeType != ModeDir:
			return nil, ErrNotDir
		case !isDir && d.Mode&ModeType == ModeDir:
			return nil, ErrIsDir
		}
		return &record.Op{Code: record.OpUnlink, Parent: parent, Name: name}, nil
	})
	return err
}

// Rename moves name in parent to newName in newParent; flags is 0 (replace
// the target), RenameNoReplace or RenameExchange.
func (s *Store) Rename(parent uint64, name string, newParent uint64, newName string, flags uint32) error {
	_, err := s.mutate(func(x ix) (*record.Op, error) {
		return &record.Op{Code: record.OpRename, Parent: parent, Name: name, NewParent: newParent, NewName: newName, Flags: flags}, nil
	})
	return err
}

// Setattr changes the attributes in a.Mask. Changing the size of a sealed
// message first copies it to the spool (copy-on-write).
func (s *Store) Setattr(ino uint64, a SetAttr) (Attr, error) {
	if s.isOrphan(ino) {
		return s.setattrOrphan(ino, a)
	}
	if a.Mask&SetSize != 0 {
		if err := s.Spool(ino, a.Size == 0); err != nil {
			return Attr{}, err
		}
		if err := s.truncateSpool(ino, int64(a.Size)); err != nil {
			return Attr{}, fmt.Errorf("backend: truncate inode %d: %w", ino, err)
		}
	}
	_, err := s.mutate(func(x ix) (*record.Op, error) {
		n, err := x.inode(ino)
		if err != nil {
			return nil, err
		}
		if n.spooled() && a.Mask&(SetAtime|SetMtime) != 0 {
			if err := s.chtimesSpool(ino, n, a); err != nil {
				return nil, err
			}
		}
		return &record.Op{Code: record.OpSetattr, Ino: ino, Mask: a.Mask, Mode: a.Mode, UID: a.UID, GID: a.GID,
			Atime: a.Atime, Mtime: a.Mtime, Size: a.Size}, nil
	})
	if err != nil {
		return Attr{}, err
	}
	return s.Getattr(ino)
}

// truncateSpool sets the size of ino's spool file.
func (s *Store) truncateSpool(ino uint64, size int64) error {
	f, err := openFile(s.spoolPath(ino), os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		if gone := s.spoolGone(ino); gone != nil {
			return gone
		}
	}
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	return firstErr(err, f.Close())
}

// chtimesSpool sets the times of a spool file, which are authoritative.
func (s *Store) chtimesSpool(ino uint64, n *inode, a SetAttr) error {
	fi, err := os.Stat(s.spoolPath(ino))
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	at, mt := time.Unix(0, n.Atime), fi.ModTime()
	if a.Mask&SetAtime != 0 {
		at = time.Unix(0, a.Atime)
	}
	if a.Mask&SetMtime != 0 {
		mt = time.Unix(0, a.Mtime)
	}
	return os.Chtimes(s.spoolPath(ino), at, mt)
}

// Commit seals spooled file ino: its bytes become a payload in a container
// (stored once per store, or once per uid: Config.Dedup) and the spool
// file goes once that is durable. Committing a file that is already
// sealed does nothing. The caller makes sure no one writes the spool file
// meanwhile.
func (s *Store) Commit(ino uint64) error {
	s.mu.Lock()
	seq, err := s.commitLocked(ino)
	s.mu.Unlock()
	if err == nil && s.opts.SyncAlways {
		err = s.sync.wait(s, seq)
	}
	return err
}

func (s *Store) commitLocked(ino uint64) (uint64, error) {
	if !s.isSpooled(ino) {
		return s.seq, nil
	}
	if err := s.CheckSpace(); err != nil {
		return 0, err
	}
	data, mtime, err := s.readSpool(ino)
	if err != nil {
		return 0, err
	}
	owner, err := s.payloadOwner(ino)
	if err != nil {
		return 0, err
	}
	body, flags, sum := record.EncodePayload(data, s.cfg.Compression == CompressionZstd, owner)
	var fx effects
	err = s.updateLocked(func(x ix) error {
		if n, err := x.inode(ino); err == nil && !x.admits(n.UID, uint64(len(data))) {
			return errQuota(n.UID)
		}
		if err := s.storePayloadLocked(x, sum, body, flags); err != nil {
			return err
		}
		failpoint(fpCommitBeforeOp)
		op := &record.Op{Code: record.OpCommit, Ino: ino, Hash: sum, Size: uint64(len(data)), Mtime: mtime}
		return s.applyLocked(x, op, &fx)
	})
	if err != nil {
		return 0, err
	}
	s.dropSpoolAfter(s.seq, fx.dropSpool)
	return s.seq, nil
}

func (s *Store) readSpool(ino uint64) ([]byte, int64, error) {
	f, err := openFile(s.spoolPath(ino), os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("backend: spool of inode %d: %w", ino, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if s.tooBig(uint64(fi.Size())) {
		return nil, 0, ErrTooBig
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, 0, fmt.Errorf("backend: spool of inode %d: %w", ino, err)
	}
	return data, fi.ModTime().UnixNano(), nil
}

// payloadOwner is whose the payload that file ino commits is: under
// DedupUser, the uid that owns the inode now. A payload keeps the owner it
// was committed under: a chown later moves the quota, not the payload.
func (s *Store) payloadOwner(ino uint64) (record.Owner, error) {
	var uid uint32
	err := s.db.View(func(tx *bolt.Tx) error {
		n, err := ix{tx}.inode(ino)
		if err == nil {
			uid = n.UID
		}
		return err
	})
	return s.cfg.owner(uid), err
}

// tooBig reports whether a message of size bytes is past the store's
// size limit, or past what a container holds (which Init now makes the
// same or more, but a store made before may say otherwise).
func (s *Store) tooBig(size uint64) bool {
	limit := max(0, min(s.cfg.MaxMessageSize, MaxMessageIn(s.cfg.ContainerSize)))
	return size > uint64(limit)
}

// storePayloadLocked appends a payload record unless the same bytes are
// already stored (single-instance storage) for the same owner, if the
// store scopes de-duplication per user: another uid's copy has another
// key, so it is written in full on the same path as a new message, and
// neither the free space nor the time taken tells that it exists. The
// index records the length of the stored bytes, compressed or not.
func (s *Store) storePayloadLocked(x ix, sum [32]byte, body []byte, flags uint8) error {
	if _, ok, err := x.payload(sum); err != nil || ok {
		return err
	}
	if err := s.roomLocked(x, record.EncodedSize(len(body)), true); err != nil {
		return err
	}
	off, err := s.writeRecordLocked(x, record.Record{Type: record.TypePayload, Flags: flags, Body: body})
	if err != nil {
		return err
	}
	return applyPayload(x, sum, payloadLoc{Container: s.active.num, Offset: off, Length: uint64(len(body) - 32)})
}

// Spool makes sealed file ino writable again by copying its bytes to a
// spool file (copy-on-write; with truncate, the copy is empty). Other
// inodes holding the same payload keep it. Spooling a spooled file does
// nothing.
func (s *Store) Spool(ino uint64, truncate bool) error {
	if s.isOrphan(ino) {
		return s.spoolOrphan(ino, truncate)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	m, err := s.OpenMessage(ino)
	if err == errNotSealed {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.checkSpaceFor(!truncate); err != nil {
		return err
	}
	if err := s.copyPayloadToSpool(ino, m, truncate); err != nil {
		return err
	}
	failpoint(fpCowBeforeOp)
	var fx effects
	return s.updateLocked(func(x ix) error {
		return s.applyLocked(x, &record.Op{Code: record.OpSpool, Ino: ino}, &fx)
	})
}

// Message is the verified bytes of a sealed message.
type Message struct {
	*bytes.Reader
	data []byte
	sum  [32]byte
}

// Sum is the message's checksum, its Attr.Payload.
func (m *Message) Sum() [32]byte { return m.sum }

// Bytes returns the whole message; callers must not change it.
func (m *Message) Bytes() []byte { return m.data }

var errNotSealed = fmt.Errorf("%w: not a sealed message", ErrInvalid)

// OpenMessage reads sealed message ino and verifies its checksum. A
// damaged record gives a *CorruptError naming its container and offset.
func (s *Store) OpenMessage(ino uint64) (*Message, error) {
	return s.openLocated(func(x ix) (payloadLoc, [32]byte, error) {
		n, err := x.inode(ino)
		if err != nil {
			return payloadLoc{}, [32]byte{}, err
		}
		if !n.sealed() {
			return payloadLoc{}, [32]byte{}, errNotSealed
		}
		loc, ok, err := x.payload(n.Payload)
		if err == nil && !ok {
			err = &IndexError{Reason: fmt.Sprintf("inode %d holds payload %x, which is not stored", ino, n.Payload[:8])}
		}
		return loc, n.Payload, err
	})
}

// OpenPayload returns the stored message whose checksum is sum, whether
// or not an inode still holds it: the bytes of a message unlinked while a
// reader has it open (see Pin). ErrNotFound if it is no longer stored.
func (s *Store) OpenPayload(sum [32]byte) (*Message, error) {
	return s.openLocated(func(x ix) (payloadLoc, [32]byte, error) {
		loc, ok, err := x.payload(sum)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return loc, sum, err
	})
}

// openLocated reads the payload that locate finds in the index. If
// compaction moved it and deleted its old container between the lookup
// and the read, it looks again: the index points at the copy. If the
// index still points into the missing file, the file was lost (deleted by
// hand, say): that is damage, reported, not retried.
func (s *Store) openLocated(locate func(x ix) (payloadLoc, [32]byte, error)) (*Message, error) {
	var last *payloadLoc
	for {
		var loc payloadLoc
		var sum [32]byte
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			loc, sum, err = locate(ix{tx})
			return err
		})
		if err != nil {
			return nil, err
		}
		m, err := s.readPayload(loc, sum)
		if err != errContainerGone {
			return m, err
		}
		if last != nil && *last == loc {
			return nil, &CorruptError{Container: loc.Container, Offset: loc.Offset,
				Reason: fmt.Sprintf("%s is missing but the index points into it", s.files.path(loc.Container))}
		}
		last = &loc
	}
}

// Pin keeps payload sum stored while pinned, even once no inode holds it:
// compaction neither drops it nor deletes its container, so that a message
// unlinked while a reader has it open stays readable until the reader is
// done, as on a local filesystem. Pins are counted, and held in memory
// only: after a restart no reader is left.
func (s *Store) Pin(sum [32]byte) {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	if s.pins == nil {
		s.pins = map[[32]byte]int{}
	}
	s.pins[sum]++
}

// Unpin drops one pin of sum.
func (s *Store) Unpin(sum [32]byte) {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	if s.pins[sum]--; s.pins[sum] <= 0 {
		delete(s.pins, sum)
	}
}

func (s *Store) pinned(sum [32]byte) bool {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	return s.pins[sum] > 0
}

// readPayload reads and verifies the payload record at loc, which the
// index says holds the message whose checksum is sum.
func (s *Store) readPayload(loc payloadLoc, sum [32]byte) (*Message, error) {
	r, err := s.readRecord(loc.Container, loc.Offset, 32+int(loc.Length))
	if err != nil {
		return nil, err
	}
	if r.Type != record.TypePayload || len(r.Body) != 32+int(loc.Length) {
		return nil, &CorruptError{Container: loc.Container, Offset: loc.Offset, Reason: "index points at a record that is not this payload"}
	}
	got, data, err := record.DecodePayload(r, s.cfg.MaxMessageSize)
	if err != nil {
		return nil, &CorruptError{Container: loc.Container, Offset: loc.Offset, Reason: err.Error()}
	}
	if got != sum {
		return nil, &CorruptError{Container: loc.Container, Offset: loc.Offset, Reason: "index points at a record that holds another payload"}
	}
	return &Message{Reader: bytes.NewReader(data), data: data, sum: sum}, nil
}

// AddUser adds a user whose tree is owned by uid and gid.
func (s *Store) AddUser(name string, uid, gid uint32) (User, error) {
	op, err := s.mutate(func(x ix) (*record.Op, error) {
		return &record.Op{Code: record.OpUser, Name: name, Ino: nextIno(x), UID: uid, GID: gid}, nil
	})
	if err != nil {
		return User{}, err
	}
	return User{Name: name, Ino: op.Ino, UID: uid, GID: gid}, nil
}

// Users lists the users of the store in name order.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			u, err := decodeUser(v)
			out = append(out, User{Name: string(k), Ino: u.Ino, UID: u.UID, GID: u.GID})
			return err
		})
	})
	return out, err
}

// User returns the user called name.
func (s *Store) User(name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("backend: user %q: %w", name, ErrNotFound)
		}
		r, err := decodeUser(v)
		u = User{Name: name, Ino: r.Ino, UID: r.UID, GID: r.GID}
		return err
	})
	return u, err
}

func inoFromKey(k []byte) uint64 {
	var v uint64
	for _, b := range k[:8] {
		v = v<<8 | uint64(b)
	}
	return v
}
