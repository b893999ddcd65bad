package backend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// replayBatch is how many records one index transaction applies on replay.
const replayBatch = 4096

// recover brings the index up to date with the journal: every record past
// the index's applied position is replayed, a torn tail of the last
// container is cut back, and the active container is opened for appends.
func (s *Store) recover() error {
	nums, err := s.files.list()
	if err != nil {
		return err
	}
	var pos journalPos
	if err := s.db.View(func(tx *bolt.Tx) error { pos = ix{tx}.applied(); return nil }); err != nil {
		return err
	}
	if len(nums) == 0 {
		if pos.Seq != 0 {
			return fmt.Errorf("backend: %s: index refers to container %d but there are no containers", s.dir, pos.Container)
		}
		return s.startFirstContainer()
	}
	if err := s.startRebuild(nums, &pos); err != nil {
		return err
	}
	defer func() { s.rebuild = nil }()
	s.seq = pos.Seq
	var last replayed
	for i, n := range nums {
		if n < pos.Container {
			continue
		}
		start := int64(record.HeaderSize)
		if n == pos.Container {
			start = pos.End
		}
		if last, err = s.replayContainer(n, start, i == len(nums)-1); err != nil {
			return err
		}
	}
	if err := s.endRebuild(); err != nil {
		return err
	}
	return s.resumeActive(nums[len(nums)-1], last)
}

// replayed describes the end of the last container replayed.
type replayed struct {
	end     int64
	records uint64
	sealed  bool
}

func (s *Store) startFirstContainer() error {
	c, err := s.createContainer(1)
	if err != nil {
		return err
	}
	s.active = c
	return s.update(func(tx *bolt.Tx) error {
		x := ix{tx}
		return firstErr(x.putContainer(1, containerInfo{Written: uint64(c.size)}), x.putMetaUint64(keyActive, 1))
	})
}

// resumeActive opens the last container for appends, or starts the next
// one if the last was sealed.
func (s *Store) resumeActive(n uint32, last replayed) error {
	if last.sealed {
		return s.update(func(tx *bolt.Tx) error {
			s.active = &container{num: n, records: last.records, size: last.end}
			return s.sealFollowUp(ix{tx}, n)
		})
	}
	return s.openActive(n, last.end, last.records)
}

// sealFollowUp starts the container after sealed container n.
func (s *Store) sealFollowUp(x ix, n uint32) error {
	next, err := s.createContainer(n + 1)
	if err != nil {
		return err
	}
	s.active = next
	return firstErr(x.putContainer(next.num, containerInfo{Written: uint64(next.size)}), x.putMetaUint64(keyActive, uint64(next.num)))
}

// replayContainer applies the records of container n from offset start.
func (s *Store) replayContainer(n uint32, start int64, isLast bool) (replayed, error) {
	f, err := openFile(s.files.path(n), os.O_RDWR, 0)
	if err != nil {
		return replayed{}, fmt.Errorf("backend: container %d: %w", n, err)
	}
	defer f.Close()
	if err := s.checkHeader(f, n); err != nil {
		if !isLast || !s.headerNeverWritten(f, n) {
			return replayed{}, err
		}
		if err := s.writeMissingHeader(f, n); err != nil {
			return replayed{}, err
		}
	}
	if _, err := f.Seek(start, 0); err != nil {
		return replayed{}, err
	}
	sc := record.NewScanner(f, start, uint32(s.cfg.ContainerSize))
	r := replayed{end: start}
	for {
		batchDone, err := s.replayBatch(n, sc, &r)
		if err != nil {
			return r, err
		}
		failpoint(fpReplayBatch)
		if batchDone {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return r, s.cutTail(f, n, sc, isLast, r.sealed)
	}
	return r, nil
}

// replayBatch applies up to replayBatch records in one transaction and
// reports whether the container is exhausted.
func (s *Store) replayBatch(n uint32, sc *record.Scanner, r *replayed) (bool, error) {
	done := false
	err := s.update(func(tx *bolt.Tx) error {
		x := ix{tx}
		var fx effects
		for i := 0; i < replayBatch; i++ {
			if !sc.Next() {
				done = true
				break
			}
			rec := sc.Record()
			if err := s.replayRecord(x, n, sc.Offset(), rec, &fx); err != nil {
				return err
			}
			if rec.Seq <= s.seq {
				return &CorruptError{Container: n, Offset: sc.Offset(), Reason: fmt.Sprintf("sequence number %d after %d", rec.Seq, s.seq)}
			}
			s.seq = rec.Seq
			r.end, r.records = sc.End(), r.records+1
			r.sealed = rec.Type == record.TypeSeal
			if err := x.putApplied(journalPos{Seq: s.seq, Container: n, End: r.end}); err != nil {
				return err
			}
		}
		c, err := x.container(n)
		if err != nil {
			return err
		}
		// Spool files of dropped inodes are removed by removeOrphanSpool
		// once the whole journal is replayed: a later op may spool the
		// same inode again.
		c.Written, c.Sealed = uint64(r.end), r.sealed
		return x.putContainer(n, c)
	})
	return done, err
}

// replayRecord applies one record found in container n at off.
func (s *Store) replayRecord(x ix, n uint32, off int64, rec record.Record, fx *effects) error {
	switch rec.Type {
	case record.TypePayload:
		sum, _, err := record.DecodePayload(rec, s.cfg.MaxMessageSize)
		if err != nil {
			return &CorruptError{Container: n, Offset: off, Reason: err.Error()}
		}
		return applyPayload(x, sum, payloadLoc{Container: n, Offset: off, Length: uint64(len(rec.Body) - 32)})
	case record.TypeOp:
		op, err := record.ParseOp(rec.Body)
		if err != nil {
			return &CorruptError{Container: n, Offset: off, Reason: err.Error()}
		}
		if skip, err := s.rebuild.checkpointOp(x, rec.Seq, &op); skip || err != nil {
			if err != nil {
				return &CorruptError{Container: n, Offset: off, Reason: fmt.Sprintf("%s op does not apply: %v", op.Code, err)}
			}
			return nil
		}
		if err := apply(x, &op, fx); err != nil {
			return &CorruptError{Container: n, Offset: off, Reason: fmt.Sprintf("%s op does not apply: %v", op.Code, err)}
		}
	}
	return nil
}

// cutTail handles a record that failed its checks. At the end of the last
// container it is a write torn by a crash: cut back to the last whole
// record. Anywhere else it is corruption, reported, never cut.
func (s *Store) cutTail(f *os.File, n uint32, sc *record.Scanner, isLast, sealed bool) error {
	err := sc.Err()
	if !isLast || sealed {
		return &CorruptError{Container: n, Offset: sc.End(), Reason: err.Error()}
	}
	if next, ok := wholeRecordAfter(f, sc.End(), uint32(s.cfg.ContainerSize)); ok {
		// A crash tears only the end of what was written. With a whole
		// record after the bad one, this is damage in the middle, and
		// cutting would throw away every acknowledged record after it.
		return &CorruptError{Container: n, Offset: sc.End(),
			Reason: fmt.Sprintf("%v; not a torn tail, a whole record follows at offset %d", err, next)}
	}
	fi, serr := f.Stat()
	if serr != nil {
		return serr
	}
	s.log.Warn("cutting torn tail of the journal", "container", n, "offset", sc.End(),
		"bytes", fi.Size()-sc.End(), "reason", err)
	if err := f.Truncate(sc.End()); err != nil {
		return fmt.Errorf("backend: container %d: cut tail: %w", n, err)
	}
	return f.Sync()
}

func (s *Store) checkHeader(f *os.File, n uint32) error {
	buf := make([]byte, record.HeaderSize)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return &CorruptError{Container: n, Offset: 0, Reason: "cannot read header: " + err.Error()}
	}
	h, err := record.DecodeHeader(buf)
	if err != nil {
		return &CorruptError{Container: n, Offset: 0, Reason: err.Error()}
	}
	if h.Number != n || h.StoreID != s.storeID {
		return &CorruptError{Container: n, Offset: 0, Reason: fmt.Sprintf("header names container %d of store %x", h.Number, h.StoreID)}
	}
	return nil
}

// headerNeverWritten reports whether container file f holds no more than
// a beginning of the header it should have (or zeros): a crash after the
// file was created and before its header was written (or fsynced). Every
// record follows the header, so no record can have been in it.
func (s *Store) headerNeverWritten(f *os.File, n uint32) bool {
	fi, err := f.Stat()
	if err != nil || fi.Size() > record.HeaderSize {
		return false
	}
	got := make([]byte, fi.Size())
	if _, err := f.ReadAt(got, 0); err != nil {
		return false
	}
	return bytes.HasPrefix(s.containerHeader(n), got) || bytes.Count(got, []byte{0}) == len(got)
}

// writeMissingHeader gives the last container the header a crash kept it
// from getting, so that it is what its creation would have left.
func (s *Store) writeMissingHeader(f *os.File, n uint32) error {
	s.log.Warn("container was created but its header not written before a crash; writing it", "container", n)
	if _, err := f.WriteAt(s.containerHeader(n), 0); err != nil {
		return fmt.Errorf("backend: container %d: write header: %w", n, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backend: container %d: write header: %w", n, err)
	}
	return nil
}

// wholeRecordAfter returns the offset of the first valid record that
// starts after offset bad in container file f. Records start at multiples
// of 8, so only those places are tried; a wrong magic number rejects most
// at once.
func wholeRecordAfter(f *os.File, bad int64, maxBody uint32) (int64, bool) {
	const chunk = 1 << 20 // a multiple of 8
	buf := make([]byte, chunk)
	for base := bad + 8; ; base += chunk {
		n, err := f.ReadAt(buf, base)
		for i := 0; i < n; i += 8 {
			_, _, derr := record.Decode(buf[i:n], maxBody)
			if derr == nil || errors.Is(derr, record.ErrShort) && validRecordAt(f, base+int64(i), maxBody) {
				return base + int64(i), true
			}
		}
		if err != nil {
			return 0, false
		}
	}
}

// validRecordAt reports whether a whole, valid record starts at off.
func validRecordAt(f *os.File, off int64, maxBody uint32) bool {
	hdr := make([]byte, recordHeaderSize)
	if _, err := f.ReadAt(hdr, off); err != nil {
		return false
	}
	n := binary.LittleEndian.Uint32(hdr[16:20])
	if n > maxBody {
		return false
	}
	rec := make([]byte, record.EncodedSize(int(n)))
	if _, err := f.ReadAt(rec, off); err != nil {
		return false
	}
	_, _, err := record.Decode(rec, maxBody)
	return err == nil
}
