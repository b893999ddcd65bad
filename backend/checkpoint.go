package backend

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// rebuildState says which checkpoint a rebuild of the index starts from.
// Replay after a crash has none: the index already holds what a
// checkpoint says, so checkpoint ops are skipped.
type rebuildState struct {
	begin, end uint64 // sequence numbers of the latest complete checkpoint; 0: none
	seenBegin  bool
}

// checkpointOp decides what replay does with op, numbered seq: it reports
// skip for a checkpoint op that is not the chosen checkpoint's and for an
// op older than the chosen checkpoint (its effect is in the checkpoint),
// and applies the chosen checkpoint's ops itself.
func (r *rebuildState) checkpointOp(x ix, seq uint64, op *record.Op) (skip bool, err error) {
	if r == nil || r.begin == 0 {
		return op.Code.Checkpoint(), nil
	}
	switch {
	case seq < r.begin:
		return true, nil
	case seq > r.end:
		return op.Code.Checkpoint(), nil
	case !op.Code.Checkpoint():
		return true, fmt.Errorf("%w: op inside the checkpoint", ErrInvalid)
	}
	return true, r.applyCheckpoint(x, op)
}

// applyCheckpoint loads one record of the chosen checkpoint into an index
// that holds, so far, only payloads (every older op was skipped).
func (r *rebuildState) applyCheckpoint(x ix, op *record.Op) error {
	switch op.Code {
	case record.OpCkptBegin:
		r.seenBegin = true
		return x.putMetaUint64(keyNextIno, max(op.Ino, x.metaUint64(keyNextIno)))
	case record.OpCkptUser:
		return x.tx.Bucket(bucketUsers).Put([]byte(op.Name), encodeUser(userRec{Ino: op.Ino, UID: op.UID, GID: op.GID}))
	case record.OpCkptInode:
		n := &inode{Mode: op.Mode, UID: op.UID, GID: op.GID, Nlink: op.Nlink, Subdirs: op.Subdirs,
			Atime: op.Atime, Mtime: op.Mtime, Ctime: op.Time, Size: op.Size, Parent: op.Parent,
			Payload: op.Hash, Target: op.Target}
		if n.sealed() {
			if err := firstErr(x.ref(n.Payload), x.charge(n, 1)); err != nil {
				return err
			}
		}
		return x.putInode(op.Ino, n)
	case record.OpCkptQuota:
		return applyQuota(x, op)
	case record.OpCkptEntry:
		return x.putDirent(op.Parent, op.Name, dirent{Ino: op.Ino, Mode: op.Mode})
	case record.OpCkptEnd:
		if !r.seenBegin {
			return fmt.Errorf("%w: checkpoint end without its begin", ErrInvalid)
		}
	}
	return nil
}

// findCheckpoint finds the latest complete checkpoint, scanning the
// containers from the newest back until one holds a ckpt-end. Containers
// that compaction deleted are older than it, so the rebuild needs nothing
// they held but what it says.
func (s *Store) findCheckpoint(nums []uint32) (*rebuildState, error) {
	for i := len(nums) - 1; i >= 0; i-- {
		r, err := s.lastCheckpointIn(nums[i])
		if err != nil || r != nil {
			return r, err
		}
	}
	return &rebuildState{}, nil
}

func (s *Store) lastCheckpointIn(n uint32) (*rebuildState, error) {
	f, err := openFile(s.files.path(n), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("backend: container %d: %w", n, err)
	}
	defer f.Close()
	if _, err := f.Seek(record.HeaderSize, 0); err != nil {
		return nil, err
	}
	var found *rebuildState
	sc := record.NewScanner(bufio.NewReaderSize(f, 1<<20), record.HeaderSize, uint32(s.cfg.ContainerSize))
	for sc.Next() {
		rec := sc.Record()
		// The op code is the body's first byte: only ckpt-end ops are parsed.
		if rec.Type != record.TypeOp || len(rec.Body) == 0 || record.OpCode(rec.Body[0]) != record.OpCkptEnd {
			continue
		}
		op, err := record.ParseOp(rec.Body)
		if err != nil {
			return nil, &CorruptError{Container: n, Offset: sc.Offset(), Reason: err.Error()}
		}
		found = &rebuildState{begin: op.Seq, end: rec.Seq}
	}
	// A torn tail is cut by the replay that follows; records before it count.
	return found, nil
}

// keyRebuild, in the meta bucket, holds the checkpoint (u64 begin seq,
// u64 end seq) a rebuild in progress starts from, so that a rebuild that
// crashes part way resumes from the same checkpoint instead of applying
// the rest of the journal as if the index were complete.
var keyRebuild = []byte("rebuild")

// newStore reports whether the containers are those of a store just made:
// one container, holding its header and nothing else. Its first open
// builds the index from them like any rebuild, with nothing to say.
func (s *Store) newStore(nums []uint32) bool {
	if len(nums) != 1 || nums[0] != 1 {
		return false
	}
	fi, err := os.Lstat(s.files.path(1))
	return err == nil && fi.Size() == record.HeaderSize
}

// startRebuild chooses the checkpoint for a rebuild of an empty index, or
// takes up the one a crashed rebuild chose; a complete index has none.
func (s *Store) startRebuild(nums []uint32, pos *journalPos) error {
	if pos.Container == 0 {
		if !s.newStore(nums) {
			s.log.Info("the index is new or empty: rebuilding it from the containers", "store", s.dir, "containers", len(nums))
		}
		*pos = journalPos{Container: nums[0], End: record.HeaderSize}
		r, err := s.findCheckpoint(nums)
		if err != nil {
			return err
		}
		if r.begin == 0 && nums[0] != 1 {
			// Compaction deletes containers only after a checkpoint
			// that stands in for them: without one, they were lost.
			return fmt.Errorf("%w: containers 1 to %d are not in %s and no checkpoint replaces them; the records in them cannot be recovered",
				ErrContainerMissing, nums[0]-1, s.files.dir)
		}
		s.rebuild = r
		return s.update(func(tx *bolt.Tx) error {
			v := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, r.begin), r.end)
			return tx.Bucket(bucketMeta).Put(keyRebuild, v)
		})
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyRebuild); len(v) == 16 {
			r := &rebuildState{begin: binary.LittleEndian.Uint64(v), end: binary.LittleEndian.Uint64(v[8:])}
			r.seenBegin = r.begin != 0 && pos.Seq >= r.begin
			s.rebuild = r
		}
		return nil
	})
}

// endRebuild records that the index is complete.
func (s *Store) endRebuild() error {
	if s.rebuild == nil {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyRebuild) })
}
