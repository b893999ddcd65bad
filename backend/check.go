package backend

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// Report is what Check verified and what it found wrong.
type Report struct {
	Containers int
	Records    uint64
	Payloads   uint64
	Ops        uint64
	Bytes      uint64
	Inodes     uint64
	Dirents    uint64
	Problems   []string
}

// OK reports whether Check found nothing wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check verifies every record of every container (framing, checksum,
// payload hash, sequence order) and every reference of the index (names,
// inodes, link counts, payloads and their locations, spool files). It
// changes nothing.
func (s *Store) Check() (*Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	r := &Report{}
	if s.unclean {
		r.problem("the store was not closed cleanly (its state file says open) and recovery has not run, so the journal may be ahead of the index: "+
			"mount it once, or run 'packdir fsck --rebuild %s', then fsck again", s.dir)
	}
	if err := s.checkContainers(r); err != nil {
		return nil, err
	}
	err := s.db.View(func(tx *bolt.Tx) error { return s.checkIndex(ix{tx}, r) })
	return r, err
}

func (s *Store) checkContainers(r *Report) error {
	nums, err := s.files.list()
	if err != nil {
		return err
	}
	var lastSeq uint64
	for _, n := range nums {
		r.Containers++
		if err := s.checkContainer(n, r, &lastSeq); err != nil {
			return err
		}
	}
	if lastSeq != s.seq {
		r.problem("journal ends at sequence %d but the store has appended %d", lastSeq, s.seq)
	}
	return s.db.View(func(tx *bolt.Tx) error { return s.checkContainerFiles(ix{tx}, nums, r) })
}

// checkContainerFiles compares the container files on disk with the
// index's list, so that no file is leaked (by an interrupted compaction
// or otherwise) without fsck seeing it, and none is missing.
func (s *Store) checkContainerFiles(x ix, nums []uint32, r *Report) error {
	onDisk := map[uint32]bool{}
	for _, n := range nums {
		onDisk[n] = true
		c, err := x.container(n)
		v := x.tx.Bucket(bucketContainers).Get(containerKey(n))
		switch {
		case err != nil:
			r.problem("container %d: %v", n, err)
		case v == nil:
			r.problem("container %d is on disk but not in the index (%d bytes nothing refers to)", n, s.fileSize(n))
		case c.Deleted:
			r.problem("container %d was compacted away but its file is still on disk", n)
		case s.fileSize(n) < int64(c.Written):
			r.problem("%v", &CorruptError{Container: n, Offset: s.fileSize(n), Reason: truncatedReason(s.files.path(n), s.fileSize(n), c.Written, s.dir)})
		}
	}
	return x.tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
		c, err := decodeContainerInfo(v)
		if n := containerNum(k); err == nil && !c.Deleted && !onDisk[n] {
			r.problem("container %d is in the index but its file %s is missing", n, s.files.path(n))
		}
		return nil
	})
}

func (s *Store) fileSize(n uint32) int64 {
	fi, err := os.Stat(s.files.path(n))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (s *Store) checkContainer(n uint32, r *Report, lastSeq *uint64) error {
	f, err := openFile(s.files.path(n), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.checkHeader(f, n); err != nil {
		r.problem("%v", err)
		return nil
	}
	limit := uint32(s.cfg.ContainerSize)
	for start := int64(record.HeaderSize); ; {
		end, err := s.checkRecords(f, n, start, r, lastSeq)
		if err == nil {
			r.Bytes += uint64(end)
			return nil
		}
		r.problem("%v", &CorruptError{Container: n, Offset: end, Reason: err.Error()})
		// Check on past the damage, so that one bad record does not
		// hide what else is wrong (or right) in the container.
		next, ok := wholeRecordAfter(f, end, limit)
		if !ok {
			r.Bytes += uint64(end)
			return nil
		}
		r.problem("container %d: %d bytes from offset %d skipped; checking on at offset %d", n, next-end, end, next)
		start = next
	}
}

// checkRecords checks the records of container n from offset start up to
// the end of the file or the first bad record; it returns where it
// stopped and why.
func (s *Store) checkRecords(f *os.File, n uint32, start int64, r *Report, lastSeq *uint64) (int64, error) {
	in := bufio.NewReaderSize(io.NewSectionReader(f, start, math.MaxInt64-start), 1<<20)
	sc := record.NewScanner(in, start, uint32(s.cfg.ContainerSize))
	for sc.Next() {
		rec := sc.Record()
		r.Records++
		if rec.Seq <= *lastSeq {
			r.problem("%v", &CorruptError{Container: n, Offset: sc.Offset(), Reason: fmt.Sprintf("sequence %d after %d", rec.Seq, *lastSeq)})
		}
		*lastSeq = rec.Seq
		s.checkRecord(n, sc.Offset(), rec, r)
	}
	return sc.End(), sc.Err()
}

func (s *Store) checkRecord(n uint32, off int64, rec record.Record, r *Report) {
	var err error
	switch rec.Type {
	case record.TypePayload:
		r.Payloads++
		_, _, err = record.DecodePayload(rec, s.cfg.MaxMessageSize)
		if err == nil {
			err = s.checkPayloadScope(rec)
		}
	case record.TypeOp:
		r.Ops++
		_, err = record.ParseOp(rec.Body)
	case record.TypeSeal:
		_, _, err = record.ParseSeal(rec.Body)
	}
	if err != nil {
		r.problem("%v", &CorruptError{Container: n, Offset: off, Reason: err.Error()})
	}
}

// checkPayloadScope checks that a payload record is keyed as the store's
// de-duplication scope keys payloads: a store keeps one kind only, so
// that a key of one kind can never name bytes stored under the other.
func (s *Store) checkPayloadScope(rec record.Record) error {
	owned := rec.Flags&record.FlagOwner != 0
	if owned == (s.cfg.Dedup == DedupUser) {
		return nil
	}
	kind := "a store-wide payload"
	if owned {
		kind = "a payload keyed by its owner's uid"
	}
	return fmt.Errorf("%s in a store whose de-duplication scope is %q", kind, s.cfg.Dedup)
}

// indexCounts are what the index's own counters must agree with.
type indexCounts struct {
	names   map[uint64]uint32 // file inode -> names seen
	subdirs map[uint64]uint32 // directory -> child directories seen
	parent  map[uint64]uint64 // directory -> directory holding it
	refs    map[[32]byte]uint32
	spooled map[uint64]bool     // spooled files
	damaged map[[32]byte]damage // payloads whose record is unreadable
}

// damage is where a payload's record is unreadable, and why.
type damage struct {
	loc    payloadLoc
	reason string
}

func (s *Store) checkIndex(x ix, r *Report) error {
	c := indexCounts{names: map[uint64]uint32{}, subdirs: map[uint64]uint32{}, parent: map[uint64]uint64{}, refs: map[[32]byte]uint32{},
		spooled: map[uint64]bool{}, damaged: map[[32]byte]damage{}}
	if err := s.checkDirents(x, r, &c); err != nil {
		return err
	}
	if err := s.checkInodes(x, r, &c); err != nil {
		return err
	}
	if err := s.checkPayloads(x, r, &c); err != nil {
		return err
	}
	if err := checkUsage(x, r); err != nil {
		return err
	}
	if err := s.reportDamagedMessages(x, r, &c); err != nil {
		return err
	}
	if err := s.reportUnsealed(x, r, &c); err != nil {
		return err
	}
	return s.checkUsers(x, r)
}

func (s *Store) checkDirents(x ix, r *Report, c *indexCounts) error {
	hashKey := x.dirHashKey()
	return x.tx.Bucket(bucketDirents).ForEach(func(k, v []byte) error {
		r.Dirents++
		if len(k) <= direntKeyLen {
			r.problem("directory entry key %x is too short", k)
			return nil
		}
		parent, name := inoFromKey(k), direntName(k)
		if want := nameCookie(hashKey, name); direntCookie(k) != want {
			r.problem("entry %q of directory %d is filed under cookie %d, its name's is %d: lookups miss it", name, parent, direntCookie(k), want)
		}
		d, err := decodeDirent(v)
		if err != nil {
			r.problem("entry %q of directory %d: %v", name, parent, err)
			return nil
		}
		if p, err := x.inode(parent); err != nil || !p.isDir() {
			r.problem("entry %q is in %d, which is not a directory", name, parent)
		}
		n, err := x.inode(d.Ino)
		if err != nil {
			r.problem("entry %q of directory %d points to missing inode %d", name, parent, d.Ino)
			return nil
		}
		if n.Mode&ModeType != d.Mode&ModeType {
			r.problem("entry %q of directory %d: type %o, inode %d has %o", name, parent, d.Mode&ModeType, d.Ino, n.Mode&ModeType)
		}
		if n.isDir() {
			c.subdirs[parent]++
			c.parent[d.Ino] = parent
		} else {
			c.names[d.Ino]++
		}
		return nil
	})
}

func (s *Store) checkInodes(x ix, r *Report, c *indexCounts) error {
	return x.tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
		r.Inodes++
		ino := inoFromKey(k)
		n, err := decodeInode(v)
		if err != nil {
			r.problem("inode %d: %v", ino, err)
			return nil
		}
		switch {
		case n.isDir():
			s.checkDir(ino, n, r, c)
		case c.names[ino] != n.Nlink:
			r.problem("inode %d has link count %d but %d names", ino, n.Nlink, c.names[ino])
		}
		if n.sealed() {
			c.refs[n.Payload]++
		} else if n.isFile() {
			c.spooled[ino] = true
			if fi, err := os.Lstat(s.spoolPath(ino)); err != nil {
				r.problem("spooled inode %d has no spool file: %v", ino, err)
			} else if !fi.Mode().IsRegular() {
				r.problem("the spool file of inode %d, %s, is not a regular file (%v)", ino, s.spoolPath(ino), fi.Mode().Type())
			}
		}
		return nil
	})
}

func (s *Store) checkDir(ino uint64, n *inode, r *Report, c *indexCounts) {
	if n.Subdirs != c.subdirs[ino] {
		r.problem("directory %d counts %d subdirectories but has %d", ino, n.Subdirs, c.subdirs[ino])
	}
	if ino == RootIno {
		return
	}
	if p, ok := c.parent[ino]; !ok {
		r.problem("directory %d has no name", ino)
	} else if p != n.Parent {
		r.problem("directory %d is in %d but records parent %d", ino, p, n.Parent)
	}
}

func (s *Store) checkPayloads(x ix, r *Report, c *indexCounts) error {
	err := x.tx.Bucket(bucketPayloads).ForEach(func(k, v []byte) error {
		var sum [32]byte
		copy(sum[:], k)
		p, err := decodePayload(v)
		if err != nil {
			r.problem("payload %x: %v", sum[:8], err)
			return nil
		}
		if p.Refs != c.refs[sum] {
			r.problem("payload %x counts %d references but %d inodes hold it", sum[:8], p.Refs, c.refs[sum])
		}
		delete(c.refs, sum)
		s.checkPayloadLocation(sum, p, r, c)
		return nil
	})
	for sum := range c.refs {
		r.problem("payload %x is held but not indexed", sum[:8])
	}
	return err
}

// checkPayloadLocation reads the record the index points at and checks it
// is this payload.
func (s *Store) checkPayloadLocation(sum [32]byte, p payloadLoc, r *Report, c *indexCounts) {
	rec, err := s.readRecord(p.Container, p.Offset, 32+int(p.Length))
	if err == errContainerGone {
		r.problem("payload %x: container %d offset %d: the container file is missing", sum[:8], p.Container, p.Offset)
		c.damaged[sum] = damage{p, "the container file is missing"}
		return
	}
	if err != nil {
		r.problem("payload %x: %v", sum[:8], err)
		c.damaged[sum] = damage{p, err.Error()}
		return
	}
	got, _, err := record.DecodePayload(rec, s.cfg.MaxMessageSize)
	if err != nil || got != sum || rec.Type != record.TypePayload {
		r.problem("payload %x: container %d offset %d does not hold it", sum[:8], p.Container, p.Offset)
		c.damaged[sum] = damage{p, "the record there is not this payload"}
	}
}

// reportDamagedMessages names every message whose payload is damaged by
// its paths in the tree, so that an administrator knows which mail to
// restore from a backup.
func (s *Store) reportDamagedMessages(x ix, r *Report, c *indexCounts) error {
	if len(c.damaged) == 0 {
		return nil
	}
	dirs, hits, err := namedFiles(x, func(e *dirName) bool {
		n, err := x.inode(e.ino)
		if err != nil || !n.sealed() {
			return false
		}
		_, bad := c.damaged[n.Payload]
		e.payload = n.Payload
		return bad
	})
	for _, e := range hits {
		dm := c.damaged[e.payload]
		r.problem("damaged message %s (inode %d): %s offset %d: %s", pathOf(dirs, e), e.ino,
			s.files.path(dm.loc.Container), dm.loc.Offset, dm.reason)
	}
	return err
}

// reportUnsealed names every file in new/ or cur/ that is not a sealed
// message: its bytes are only in its spool file, outside the containers
// and their checksums, and it escapes the quota and the size limit.
func (s *Store) reportUnsealed(x ix, r *Report, c *indexCounts) error {
	files, err := s.unsealedFiles(x, c.spooled)
	for _, f := range files {
		r.problem("unsealed message %s (inode %d, %d bytes): written in place but never sealed into a container "+
			"(the mount's log says why); a rename into new/ or cur/ seals it or says why not", f.Path, f.Ino, f.Size)
	}
	return err
}

// dirName is one directory entry, for finding paths.
type dirName struct {
	parent, ino uint64
	name        string
	payload     [32]byte
}

// namedFiles walks every name in x once and returns the directories, by
// inode, and the names of files that keep accepts (it may fill in
// e.payload), for pathOf to name them. Entries that do not decode are
// checkDirents's to report.
func namedFiles(x ix, keep func(e *dirName) bool) (map[uint64]dirName, []dirName, error) {
	dirs := map[uint64]dirName{}
	var files []dirName
	b := x.tx.Bucket(bucketDirents)
	if b == nil {
		return dirs, nil, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		d, err := decodeDirent(v)
		if err != nil {
			return nil
		}
		e := dirName{parent: inoFromKey(k), name: direntName(k), ino: d.Ino}
		if d.Mode&ModeType == ModeDir {
			dirs[d.Ino] = e
		} else if keep(&e) {
			files = append(files, e)
		}
		return nil
	})
	return dirs, files, err
}

// pathOf returns e's path from the store root, as "/user/folder/cur/name".
func pathOf(dirs map[uint64]dirName, e dirName) string {
	path := "/" + e.name
	for p, depth := e.parent, 0; p != RootIno; depth++ {
		if depth > 4096 {
			return "?loop" + path // a damaged index; checkDir reports it
		}
		d, ok := dirs[p]
		if !ok {
			return fmt.Sprintf("?%d%s", p, path)
		}
		path = "/" + d.name + path
		p = d.parent
	}
	return path
}

func (s *Store) checkUsers(x ix, r *Report) error {
	return x.tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		u, err := decodeUser(v)
		if err != nil {
			r.problem("user %q: %v", k, err)
			return nil
		}
		d, ok, _ := x.dirent(RootIno, string(k))
		if !ok || d.Ino != u.Ino {
			r.problem("user %q: tree %d is not the store root's entry %q", k, u.Ino, k)
		}
		return nil
	})
}
