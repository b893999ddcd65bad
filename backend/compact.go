package backend

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// Compaction reclaims the dead bytes of sealed containers (payloads no
// inode holds, and op records) in four steps, each safe to crash after;
// FORMAT.md, "Compaction", is the specification:
//
//  1. copy: every payload still live in a candidate is appended to the
//     active container, and the index switched to the copy in a short
//     transaction that re-checks that the payload still lives where it
//     was. Reading and checking the old container happen outside the lock.
//  2. checkpoint: the whole namespace is journaled as absolute state
//     (ckpt-* ops), so that a rebuild needs no op older than it, and the
//     journal is fsynced.
//  3. switch: one index transaction verifies nothing points into the
//     candidates any more and marks them deleted.
//  4. delete: the files are removed; Open finishes this step if a crash
//     interrupts it.

// DefaultCompactThreshold is the dead share, in percent, from which a
// sealed container is compacted.
const DefaultCompactThreshold = 40

// Compaction failpoints, in the order a compaction passes them.
var (
	// fpCompactCopied: live payloads are copied and the index points at
	// the copies; no checkpoint is written.
	fpCompactCopied = registerFailpoint("compact-copied")
	// fpCompactCheckpointed: the checkpoint is durable; the index still
	// lists the old containers.
	fpCompactCheckpointed = registerFailpoint("compact-checkpointed")
	// fpCompactSwitched: the index marks the old containers deleted;
	// their files are still on disk.
	fpCompactSwitched = registerFailpoint("compact-switched")
)

// errCompactStopped ends a compaction because the store is closing.
var errCompactStopped = errors.New("backend: compaction stopped: the store is closing")

// copyBatchBytes bounds the payload bytes copied in one index transaction,
// so that writers wait for the store lock only a moment.
const copyBatchBytes = 4 << 20

// ckptRecordEstimate is a generous size of one checkpoint record, used to
// decide whether a compaction reclaims more than its checkpoint costs.
const ckptRecordEstimate = 128

// CompactResult is what one compaction did.
type CompactResult struct {
	Containers     int      `json:"containers"`      // containers deleted
	Reclaimed      uint64   `json:"reclaimed_bytes"` // bytes of the deleted container files
	Copied         uint64   `json:"copied_bytes"`    // bytes of live payload records copied
	Checkpoint     uint64   `json:"checkpoint_bytes"`
	SkippedReasons []string `json:"kept,omitempty"`
	// CheckpointLock is how long the checkpoint held the store lock.
	CheckpointLock time.Duration `json:"checkpoint_lock_ns"`
}

// compactCandidate is a container chosen for compaction and the payloads
// found in it.
type compactCandidate struct {
	num     uint32
	written uint64
	live    uint64
	hashes  [][32]byte
}

// Compact rewrites the sealed containers whose dead share is at least
// threshold percent (0: the store's setting), while the store stays open
// for readers and writers. It does nothing when the dead bytes would not
// pay for the checkpoint it writes.
func (s *Store) Compact(threshold int) (CompactResult, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	var res CompactResult
	if threshold <= 0 {
		threshold = s.compactThreshold()
	}
	cands, err := s.compactCandidates(threshold)
	if err != nil || len(cands) == 0 {
		return res, err
	}
	// Compaction frees space: on a full disk it may use the reserve.
	defer s.lendReserve()()
	if cands, err = s.copyCandidates(cands, &res); err != nil {
		return res, err
	}
	failpoint(fpCompactCopied)
	start := time.Now()
	if err := s.spare(func() (err error) { res.Checkpoint, err = s.writeCheckpoint(); return err }); err != nil {
		return res, err
	}
	// Writers wait for the store lock while the checkpoint is written.
	res.CheckpointLock = time.Since(start)
	if err := s.Sync(); err != nil {
		return res, err
	}
	failpoint(fpCompactCheckpointed)
	deleted, err := s.switchAway(cands, &res)
	if err != nil {
		return res, err
	}
	failpoint(fpCompactSwitched)
	for _, c := range deleted {
		if err := s.files.remove(c.num); err != nil {
			return res, err
		}
		res.Containers++
		res.Reclaimed += c.written
	}
	s.log.Info("compacted", "containers", res.Containers, "reclaimed", res.Reclaimed, "copied", res.Copied,
		"checkpoint", res.Checkpoint, "checkpoint_lock", res.CheckpointLock)
	return res, nil
}

// copyCandidates copies the live payloads of the candidates, those with
// the fewest live bytes first, and returns the candidates it copied
// completely. When the disk fills up, even with the reserve released,
// it stops there: the candidates copied so far are compacted, and give
// space back for the rest next time.
func (s *Store) copyCandidates(cands []compactCandidate, res *CompactResult) ([]compactCandidate, error) {
	sort.Slice(cands, func(i, j int) bool { return cands[i].live < cands[j].live })
	for i := range cands {
		copied, err := s.copyLive(&cands[i])
		res.Copied += copied
		if s.retryable(err) && i > 0 {
			s.log.Warn("the disk is full: compacting only the containers copied so far", "compacted", i, "candidates", len(cands), "err", err)
			res.SkippedReasons = append(res.SkippedReasons, fmt.Sprintf("the disk is full: %d of %d containers copied", i, len(cands)))
			return cands[:i], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return cands, nil
}

func (s *Store) compactThreshold() int {
	switch {
	case s.opts.CompactThreshold > 0:
		return s.opts.CompactThreshold
	case s.cfg.CompactThreshold > 0:
		return s.cfg.CompactThreshold
	}
	return DefaultCompactThreshold
}

// compactCandidates lists the sealed containers at least threshold percent
// dead, or none if their dead bytes are less than twice what the
// checkpoint will cost: otherwise compaction could chase its own tail.
func (s *Store) compactCandidates(threshold int) ([]compactCandidate, error) {
	var cands []compactCandidate
	var dead, estimate uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
			c, err := decodeContainerInfo(v)
			if err != nil || !c.Sealed || c.Deleted || c.Written == 0 {
				return err
			}
			if (c.Written-c.Live)*100 >= uint64(threshold)*c.Written {
				cands = append(cands, compactCandidate{num: containerNum(k), written: c.Written, live: c.Live})
				dead += c.Written - c.Live
			}
			return nil
		})
		if err != nil || len(cands) == 0 {
			return err
		}
		// Counting walks the buckets: only when there is something to do.
		estimate = ckptRecordEstimate * uint64(tx.Bucket(bucketInodes).Stats().KeyN+
			tx.Bucket(bucketDirents).Stats().KeyN+tx.Bucket(bucketUsers).Stats().KeyN+2)
		return nil
	})
	if err != nil || dead < 2*estimate {
		return nil, err
	}
	return cands, nil
}

func containerNum(k []byte) uint32 { return uint32(inoFromKey(append(make([]byte, 4), k...))) }

// pendingCopy is one payload record read from a candidate.
type pendingCopy struct {
	sum [32]byte
	off int64
	rec record.Record
}

// copyLive scans candidate c outside the store lock and copies, in
// batches, every payload that is still live where the scan found it.
func (s *Store) copyLive(c *compactCandidate) (uint64, error) {
	f, err := openFile(s.files.path(c.num), os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("backend: compact container %d: %w", c.num, err)
	}
	defer f.Close()
	if _, err := f.Seek(record.HeaderSize, 0); err != nil {
		return 0, err
	}
	sc := record.NewScanner(bufio.NewReaderSize(f, 1<<20), record.HeaderSize, uint32(s.cfg.ContainerSize))
	var batch []pendingCopy
	var batchBytes int
	var copied uint64
	flush := func() error {
		n, err := s.copyBatch(c.num, batch)
		copied += n
		batch, batchBytes = batch[:0], 0
		return err
	}
	for sc.Next() {
		if s.compactor.stopping() {
			return copied, errCompactStopped
		}
		rec := sc.Record()
		if rec.Type != record.TypePayload || len(rec.Body) < 32 {
			continue
		}
		var sum [32]byte
		copy(sum[:], rec.Body)
		c.hashes = append(c.hashes, sum)
		rec.Body = append([]byte(nil), rec.Body...)
		batch = append(batch, pendingCopy{sum: sum, off: sc.Offset(), rec: rec})
		if batchBytes += len(rec.Body); batchBytes >= copyBatchBytes {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return copied, &CorruptError{Container: c.num, Offset: sc.End(), Reason: err.Error()}
	}
	return copied, flush()
}

// copyBatch copies the payloads of batch that the index still locates in
// container n at the offset they were read from, and forgets those that no
// inode holds any more.
func (s *Store) copyBatch(n uint32, batch []pendingCopy) (uint64, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errCompactStopped
	}
	var copied uint64
	err := s.spare(func() error {
		return s.updateLocked(func(x ix) error {
			copied = 0
			for _, p := range batch {
				loc, ok, err := x.payload(p.sum)
				if err != nil {
					return err
				}
				if !ok || loc.Container != n || loc.Offset != p.off {
					continue
				}
				if loc.Refs == 0 {
					if s.pinned(p.sum) {
						continue // read by a holder of an unlinked file: stays where it is
					}
					if err := x.tx.Bucket(bucketPayloads).Delete(p.sum[:]); err != nil {
						return err
					}
					continue
				}
				if err := s.movePayloadLocked(x, p, loc); err != nil {
					return err
				}
				copied += uint64(record.EncodedSize(len(p.rec.Body)))
			}
			return nil
		})
	})
	return copied, err
}

// movePayloadLocked appends a copy of a live payload record and points the
// index at it, moving its live bytes from the old container to the new.
// The copy may go past the container limit of a full store: it is what
// frees space.
func (s *Store) movePayloadLocked(x ix, p pendingCopy, loc payloadLoc) error {
	size := uint64(record.EncodedSize(len(p.rec.Body)))
	if err := s.roomLocked(x, int64(size), false); err != nil {
		return err
	}
	off, err := s.writeRecordLocked(x, record.Record{Type: record.TypePayload, Flags: p.rec.Flags, Body: p.rec.Body})
	if err != nil {
		return err
	}
	if err := x.addLive(loc.Container, -int64(size)); err != nil {
		return err
	}
	if err := x.addLive(s.active.num, int64(size)); err != nil {
		return err
	}
	loc.Container, loc.Offset = s.active.num, off
	return x.putPayload(p.sum, loc)
}

func (x ix) addLive(n uint32, delta int64) error {
	c, err := x.container(n)
	if err != nil {
		return err
	}
	c.Live = uint64(int64(c.Live) + delta)
	return x.putContainer(n, c)
}

// writeCheckpoint journals the whole namespace as absolute state. It runs
// under the store lock, so that no op falls between its records; it
// writes about 100 bytes per inode and name, none of them message bytes.
func (s *Store) writeCheckpoint() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errCompactStopped
	}
	var written uint64
	err := s.updateLocked(func(x ix) error {
		written = 0
		begin := s.seq + 1
		var count uint64
		emit := func(op *record.Op) error {
			body := record.AppendOp(nil, op)
			if _, err := s.appendLocked(x, record.TypeOp, body); err != nil {
				return err
			}
			count++
			written += uint64(record.EncodedSize(len(body)))
			return nil
		}
		t := now()
		if err := emit(&record.Op{Code: record.OpCkptBegin, Time: t, Ino: nextIno(x)}); err != nil {
			return err
		}
		if err := checkpointState(x, emit); err != nil {
			return err
		}
		return emit(&record.Op{Code: record.OpCkptEnd, Time: t, Seq: begin, Count: count + 1})
	})
	return written, err
}

// checkpointState emits one record per user, inode and name.
func checkpointState(x ix, emit func(*record.Op) error) error {
	err := x.tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		u, err := decodeUser(v)
		if err != nil {
			return err
		}
		return emit(&record.Op{Code: record.OpCkptUser, Name: string(k), Ino: u.Ino, UID: u.UID, GID: u.GID})
	})
	if err != nil {
		return err
	}
	err = x.tx.Bucket(bucketQuotas).ForEach(func(k, v []byte) error {
		b, m := decodePair(v)
		return emit(&record.Op{Code: record.OpCkptQuota, UID: uint32(inoFromKey(append(make([]byte, 4), k...))), Size: b, Count: m})
	})
	if err != nil {
		return err
	}
	err = x.tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
		n, err := decodeInode(v)
		if err != nil {
			return err
		}
		return emit(&record.Op{Code: record.OpCkptInode, Time: n.Ctime, Ino: inoFromKey(k), Mode: n.Mode,
			UID: n.UID, GID: n.GID, Nlink: n.Nlink, Subdirs: n.Subdirs, Atime: n.Atime, Mtime: n.Mtime,
			Size: n.Size, Parent: n.Parent, Hash: n.Payload, Target: n.Target})
	})
	if err != nil {
		return err
	}
	return x.tx.Bucket(bucketDirents).ForEach(func(k, v []byte) error {
		d, err := decodeDirent(v)
		if err != nil {
			return err
		}
		return emit(&record.Op{Code: record.OpCkptEntry, Parent: inoFromKey(k), Name: direntName(k), Ino: d.Ino, Mode: d.Mode})
	})
}

// switchAway marks deleted, in one index transaction, every candidate
// that nothing in the index points into any more, and returns them. A
// candidate still holding a live payload (which cannot happen unless the
// copy step was skipped) is kept and reported.
func (s *Store) switchAway(cands []compactCandidate, res *CompactResult) ([]compactCandidate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errCompactStopped
	}
	var deleted []compactCandidate
	var kept []string
	err := s.spare(func() error {
		return s.update(func(tx *bolt.Tx) error {
			deleted, kept = deleted[:0], kept[:0]
			x := ix{tx}
			for _, c := range cands {
				ok, err := s.forgetLocked(x, c)
				if err != nil {
					return err
				}
				if ok {
					deleted = append(deleted, c)
				} else {
					kept = append(kept, fmt.Sprintf("container %d still holds a live payload", c.num))
				}
			}
			return nil
		})
	})
	res.SkippedReasons = append(res.SkippedReasons, kept...)
	return deleted, err
}

func (s *Store) forgetLocked(x ix, c compactCandidate) (bool, error) {
	var dead [][32]byte
	for _, sum := range c.hashes {
		loc, ok, err := x.payload(sum)
		if err != nil {
			return false, err
		}
		if ok && loc.Container == c.num {
			if loc.Refs > 0 || s.pinned(sum) {
				return false, nil
			}
			dead = append(dead, sum)
		}
	}
	for _, sum := range dead {
		if err := x.tx.Bucket(bucketPayloads).Delete(sum[:]); err != nil {
			return false, err
		}
	}
	info, err := x.container(c.num)
	if err != nil {
		return false, err
	}
	info.Deleted, info.Live = true, 0
	return true, x.putContainer(c.num, info)
}

// removeCompacted finishes deletions a crash interrupted: files of
// containers the index marks deleted.
func (s *Store) removeCompacted() error {
	var gone []uint32
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
			c, err := decodeContainerInfo(v)
			if err == nil && c.Deleted {
				gone = append(gone, containerNum(k))
			}
			return err
		})
	})
	for _, n := range gone {
		if _, serr := os.Stat(s.files.path(n)); serr != nil {
			continue
		}
		s.log.Warn("finishing an interrupted compaction: deleting container", "container", n)
		if err := s.files.remove(n); err != nil {
			return err
		}
	}
	return err
}

// compactor runs compaction in the background: after a container is
// sealed and every Options.CompactInterval.
type compactor struct {
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

func (s *Store) startCompactor() {
	c := &s.compactor
	c.kick, c.stop, c.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	interval := s.opts.CompactInterval
	if interval <= 0 {
		interval = time.Minute
	}
	go func() {
		defer close(c.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-c.kick:
			case <-t.C:
			}
			if _, err := s.Compact(0); err != nil && !errors.Is(err, errCompactStopped) && !errors.Is(err, ErrClosed) {
				s.log.Error("background compaction failed", "err", err)
			}
		}
	}()
}

// kickCompaction asks the background compactor, if any, to look for work.
func (s *Store) kickCompaction() {
	if s.compactor.kick == nil {
		return
	}
	select {
	case s.compactor.kick <- struct{}{}:
	default:
	}
}

// stopping reports whether Close is waiting for the compactor, so that a
// long copy ends early; every step it leaves behind is a safe one.
func (c *compactor) stopping() bool {
	if c.stop == nil {
		return false
	}
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (s *Store) stopCompactor() {
	if s.compactor.stop == nil {
		return
	}
	close(s.compactor.stop)
	<-s.compactor.done
}
