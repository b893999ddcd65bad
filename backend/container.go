package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// container is the active container: the one records are appended to.
type container struct {
	num     uint32
	f       *os.File
	size    int64 // bytes written, header included
	records uint64
}

// containerFiles keeps one open file per container for reads; the active
// container's file is also the one appended to. Files stay open until the
// store closes or compaction deletes the container; reads hold mu's read
// lock, so a reader never races that close.
type containerFiles struct {
	dir   string
	mu    sync.RWMutex
	files map[uint32]*os.File
}

func containerName(n uint32) string { return fmt.Sprintf("%08d.pack", n) }

func (c *containerFiles) path(n uint32) string { return filepath.Join(c.dir, containerName(n)) }

// errContainerGone is returned for a read from a container whose file is
// not there. Compaction deletes a container only after the index no
// longer points into it, so the caller looks the payload up again; if the
// index still points there, the file was lost.
var errContainerGone = errors.New("backend: container file is missing")

// readAt reads from container n under the read lock, so that compaction
// cannot close the file in the middle of the read.
func (c *containerFiles) readAt(n uint32, buf []byte, off int64) error {
	for {
		c.mu.RLock()
		f := c.files[n]
		if f != nil {
			_, err := f.ReadAt(buf, off)
			c.mu.RUnlock()
			return err
		}
		c.mu.RUnlock()
		if _, err := c.get(n); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return errContainerGone
			}
			return err
		}
	}
}

// remove closes container n's file and deletes it.
func (c *containerFiles) remove(n uint32) error {
	c.mu.Lock()
	if f := c.files[n]; f != nil {
		f.Close()
		delete(c.files, n)
	}
	c.mu.Unlock()
	if err := os.Remove(c.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backend: delete container %d: %w", n, err)
	}
	return syncDir(c.dir)
}

// get returns container n's file, opening it read-only on first use.
func (c *containerFiles) get(n uint32) (*os.File, error) {
	c.mu.RLock()
	f := c.files[n]
	c.mu.RUnlock()
	if f != nil {
		return f, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f = c.files[n]; f != nil {
		return f, nil
	}
	f, err := openFile(c.path(n), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("backend: container %d: %w", n, err)
	}
	c.put(n, f)
	return f, nil
}

// put registers f as container n's file; callers hold mu or are alone.
func (c *containerFiles) put(n uint32, f *os.File) {
	if c.files == nil {
		c.files = map[uint32]*os.File{}
	}
	if old := c.files[n]; old != nil && old != f {
		old.Close()
	}
	c.files[n] = f
}

func (c *containerFiles) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, f := range c.files {
		f.Close()
		delete(c.files, n)
	}
}

// list returns the numbers of the container files on disk, in order.
func (c *containerFiles) list() ([]uint32, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	var nums []uint32
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".pack")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 32)
		if err != nil || n == 0 {
			continue
		}
		nums = append(nums, uint32(n))
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	return nums, nil
}

// checkContainersPresent refuses to open a store whose index names a
// container whose file is missing, or shorter than the records the index
// has in it: mounted, its messages could not be read, and appends to a
// truncated active container would leave a gap of zeros in the journal.
func (s *Store) checkContainersPresent() error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContainers)
		if b == nil {
			return nil // a new index
		}
		return b.ForEach(func(k, v []byte) error {
			c, err := decodeContainerInfo(v)
			if err != nil || c.Deleted {
				return nil // fsck reports a damaged entry
			}
			return s.checkContainerFile(containerNum(k), c)
		})
	})
}

func (s *Store) checkContainerFile(n uint32, c containerInfo) error {
	path := s.files.path(n)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s (the index has records in it); 'packdir fsck %s' lists the messages it held",
			ErrContainerMissing, path, s.dir)
	case err != nil:
		return fmt.Errorf("backend: %w", err)
	case fi.Mode()&os.ModeSymlink != 0:
		return symlinkError(path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("backend: %s is not a regular file", path)
	case fi.Size() < int64(c.Written):
		return &CorruptError{Container: n, Offset: fi.Size(), Reason: truncatedReason(path, fi.Size(), c.Written, s.dir)}
	}
	return nil
}

func truncatedReason(path string, size int64, written uint64, dir string) string {
	return fmt.Sprintf("%s is %d bytes but the index has records in it up to offset %d: the file was truncated; "+
		"'packdir fsck %s' lists what is lost, 'packdir fsck --rebuild %s' rebuilds the index from what is left",
		path, size, written, dir, dir)
}

// containerHeader is the header container n of this store starts with.
func (s *Store) containerHeader(n uint32) []byte {
	return record.ContainerHeader{Number: n, StoreID: s.storeID}.Encode()
}

// createContainer writes a new container file holding only its header and
// makes it durable, so that the journal never points into a file that a
// crash could lose.
func (s *Store) createContainer(n uint32) (*container, error) {
	path := s.files.path(n)
	f, err := openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backend: create container %d: %w", n, err)
	}
	failpoint(fpNextBeforeHeader)
	if _, err = f.Write(s.containerHeader(n)); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(s.files.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("backend: create container %d: %w", n, err)
	}
	s.files.mu.Lock()
	s.files.put(n, f)
	s.files.mu.Unlock()
	return &container{num: n, f: f, size: record.HeaderSize}, nil
}

// openActive opens container n for appending after size bytes.
func (s *Store) openActive(n uint32, size int64, records uint64) error {
	f, err := openFile(s.files.path(n), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("backend: container %d: %w", n, err)
	}
	s.files.mu.Lock()
	s.files.put(n, f)
	s.files.mu.Unlock()
	s.active = &container{num: n, f: f, size: size, records: records}
	return nil
}

// updateLocked runs fn in an index transaction. If the transaction fails
// after fn appended records, the records are cut off again, so that an op
// that returned an error cannot reappear when the journal is replayed.
func (s *Store) updateLocked(fn func(x ix) error) error {
	if s.closed {
		return ErrClosed
	}
	if s.active == nil {
		return ErrReadOnly
	}
	mark := *s.active
	err := s.update(func(tx *bolt.Tx) error { return fn(ix{tx}) })
	if err == nil {
		failpoint(fpIndexBeforeSync)
	}
	if err == nil || s.active.size == mark.size && s.active.num == mark.num {
		return err
	}
	if s.active.num != mark.num {
		// A container was sealed and another started inside the failed
		// transaction; replay will apply what the journal holds.
		s.log.Error("index update failed after sealing a container", "container", mark.num, "err", err)
		return journaledError{err}
	}
	if terr := s.active.f.Truncate(mark.size); terr != nil {
		s.log.Error("cannot cut back the journal after a failed index update", "container", mark.num, "offset", mark.size, "err", terr)
		return journaledError{err}
	}
	s.seq -= s.active.records - mark.records
	*s.active = mark
	return err
}

// journaledError is a failed index update whose records stay in the
// journal: trying the op again would journal it twice.
type journaledError struct{ error }

func (e journaledError) Unwrap() error { return e.error }

// appendLocked appends one record to the active container and records in
// the index that the journal has been applied up to it. The caller holds
// s.mu and has already applied the record's effect in x, so that a record
// is written only for a change that is valid. It returns the record's
// offset.
func (s *Store) appendLocked(x ix, typ record.Type, body []byte) (int64, error) {
	size := record.EncodedSize(len(body))
	if err := s.roomLocked(x, size, typ == record.TypePayload); err != nil {
		return 0, err
	}
	return s.writeLocked(x, typ, body)
}

func (s *Store) writeLocked(x ix, typ record.Type, body []byte) (int64, error) {
	return s.writeRecordLocked(x, record.Record{Type: typ, Body: body})
}

// writeRecordLocked appends r, numbered with the next sequence number.
func (s *Store) writeRecordLocked(x ix, r record.Record) (int64, error) {
	a := s.active
	r.Seq = s.seq + 1
	s.buf = record.Append(s.buf[:0], r)
	off := a.size
	if _, err := a.f.WriteAt(s.buf, off); err != nil {
		// Leave no partial record behind: the next append starts here.
		if terr := a.f.Truncate(off); terr != nil {
			s.log.Error("cannot cut back a failed append", "container", a.num, "offset", off, "err", terr)
		}
		return 0, fmt.Errorf("backend: container %d offset %d: append: %w", a.num, off, err)
	}
	failpoint(fpAppendBeforeIndex)
	s.seq++
	a.size += int64(len(s.buf))
	// Only after its length is counted: dropping the buffer first left the
	// size behind, so the next record overwrote a payload over 1 MiB.
	if cap(s.buf) > 1<<20 {
		s.buf = nil // do not pin a large payload's buffer
	}
	a.records++
	c, err := x.container(a.num)
	if err != nil {
		return 0, err
	}
	c.Written = uint64(a.size)
	return off, firstErr(x.putContainer(a.num, c), x.putApplied(journalPos{Seq: s.seq, Container: a.num, End: a.size}))
}

// roomLocked makes room for a record of size bytes, sealing the active
// container and starting the next one when it would pass the size limit.
// When the store may have no more containers, payloads get ErrNoSpace;
// op records still go to the last container past its limit, so that a
// full store can always be emptied by deleting mail.
func (s *Store) roomLocked(x ix, size int64, payload bool) error {
	a := s.active
	if a.size+size <= s.cfg.ContainerSize || a.records == 0 {
		return nil
	}
	if s.cfg.MaxContainers > 0 && x.liveContainers() >= s.cfg.MaxContainers {
		if payload {
			return ErrNoSpace
		}
		return nil
	}
	return s.sealLocked(x)
}

// sealLocked ends the active container with a seal record, makes it
// durable, and starts the next container.
func (s *Store) sealLocked(x ix) error {
	a := s.active
	if _, err := s.writeLocked(x, record.TypeSeal, record.SealBody(a.records+1, s.seq+1)); err != nil {
		return err
	}
	failpoint(fpSealBeforeSync)
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("backend: seal container %d: %w", a.num, err)
	}
	failpoint(fpSealBeforeNext)
	c, err := x.container(a.num)
	if err != nil {
		return err
	}
	c.Sealed = true
	if err := x.putContainer(a.num, c); err != nil {
		return err
	}
	next, err := s.createContainer(a.num + 1)
	if err != nil {
		return err
	}
	failpoint(fpSealBeforeIndex)
	s.active = next
	// Only now is the seal record sure to stay: had the next container
	// failed, updateLocked would cut the seal back and its sequence number
	// would go to the next record, which no fsync has covered.
	s.sync.markDurable(s.seq)
	// The index grows with the store, and the reserve with the index; if
	// the disk cannot hold a bigger reserve, new mail gets ENOSPC.
	if err := s.fillReserve(); err != nil && !s.reserve.lent.Load() {
		s.log.Warn("the store's reserve is not whole: new mail gets ENOSPC until space is freed", "err", err)
	}
	if err := x.putContainer(next.num, containerInfo{Written: uint64(next.size)}); err != nil {
		return err
	}
	s.kickCompaction()
	return x.putMetaUint64(keyActive, uint64(next.num))
}

// liveContainers counts the containers that are not compacted away.
// Container numbers keep growing after compaction, so the store limit
// counts containers, not numbers.
func (x ix) liveContainers() int {
	n := 0
	x.tx.Bucket(bucketContainers).ForEach(func(_, v []byte) error {
		if c, err := decodeContainerInfo(v); err == nil && !c.Deleted {
			n++
		}
		return nil
	})
	return n
}

// readRecord reads and verifies the whole record at off in container n.
func (s *Store) readRecord(n uint32, off int64, bodyLen int) (record.Record, error) {
	buf := make([]byte, record.EncodedSize(bodyLen))
	if err := s.files.readAt(n, buf, off); err != nil {
		if err == errContainerGone {
			return record.Record{}, err
		}
		return record.Record{}, &CorruptError{Container: n, Offset: off, Reason: "cannot read record: " + err.Error()}
	}
	r, _, err := record.Decode(buf, uint32(s.cfg.ContainerSize))
	if err != nil {
		return record.Record{}, &CorruptError{Container: n, Offset: off, Reason: err.Error()}
	}
	return r, nil
}
