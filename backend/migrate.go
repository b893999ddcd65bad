package backend

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// migrateIndex brings an index of an older format to IndexFormat, in one
// transaction, so that a crash leaves it old or new and the next open
// carries on. Format 1 keyed dirents by parent and name, and a listing's
// offsets counted entries: format 2 keys them by parent, cookie and name.
func (s *Store) migrateIndex() error {
	var from uint32
	if err := s.db.View(func(tx *bolt.Tx) error { from = ix{tx}.format(); return nil }); err != nil {
		return err
	}
	switch {
	case from == IndexFormat:
		return nil
	case from > IndexFormat || from < 1:
		return fmt.Errorf("%w: %s has index format %d, this packdir reads index format %d", ErrFormat, s.indexPath(), from, IndexFormat)
	}
	start := time.Now()
	var n int
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		n, err = rekeyDirents(tx, s.storeID)
		if err != nil {
			return err
		}
		return ix{tx}.putFormat(IndexFormat)
	})
	if err != nil {
		return fmt.Errorf("backend: migrate %s from index format %d: %w", s.indexPath(), from, err)
	}
	s.log.Info("index migrated: directory entries keyed by name hash, offsets are stable cookies",
		"index", s.indexPath(), "from_format", from, "to_format", IndexFormat, "entries", n, "took", time.Since(start).Round(time.Millisecond))
	return s.db.Sync()
}

// rekeyDirents rewrites the dirents bucket from format 1 keys (parent,
// name) to format 2 keys (parent, cookie, name) with the store id as the
// key of the name hash, and returns how many entries it rewrote.
func rekeyDirents(tx *bolt.Tx, storeID [16]byte) (int, error) {
	type kv struct{ k, v []byte }
	var ents []kv
	err := tx.Bucket(bucketDirents).ForEach(func(k, v []byte) error {
		if len(k) < 8 {
			return &IndexError{Reason: fmt.Sprintf("dirents key %x of format 1 is too short", k)}
		}
		parent, name := inoFromKey(k), string(k[8:])
		nk := direntKey(parent, nameCookie(storeID[:], name), name)
		ents = append(ents, kv{nk, bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := tx.DeleteBucket(bucketDirents); err != nil {
		return 0, err
	}
	b, err := tx.CreateBucket(bucketDirents)
	if err != nil {
		return 0, err
	}
	// In key order each Put appends to the one node the new bucket holds
	// until the commit splits it; out of order each would move the rest.
	sort.Slice(ents, func(i, j int) bool { return bytes.Compare(ents[i].k, ents[j].k) < 0 })
	b.FillPercent = direntsFill
	for _, e := range ents {
		if err := b.Put(e.k, e.v); err != nil {
			return 0, err
		}
	}
	return len(ents), tx.Bucket(bucketMeta).Put(keyDirHash, storeID[:])
}
