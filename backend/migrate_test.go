package backend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// writeIndexFormat1 turns the closed store's index back into format 1,
// as packdir before directory cookies wrote it: dirents keyed by parent
// (big-endian) and name, no name hash key, "format" 1.
func writeIndexFormat1(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	must(t, err)
	defer db.Close()
	must(t, db.Update(func(tx *bolt.Tx) error {
		type kv struct{ k, v []byte }
		var old []kv
		err := tx.Bucket(bucketDirents).ForEach(func(k, v []byte) error {
			ok := binary.BigEndian.AppendUint64(nil, inoFromKey(k))
			old = append(old, kv{append(ok, direntName(k)...), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		must(t, tx.DeleteBucket(bucketDirents))
		b, err := tx.CreateBucket(bucketDirents)
		must(t, err)
		for _, e := range old {
			must(t, b.Put(e.k, e.v))
		}
		must(t, tx.Bucket(bucketMeta).Delete(keyDirHash))
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.LittleEndian.AppendUint32(nil, 1))
	}))
}

// TestOpenIndexFormat1: a store whose index is of format 1 opens, its
// index is migrated in place (one log line), and the tree is the same:
// every name is found by lookup and listed once, fsck finds nothing
// wrong, and the next open does not migrate again.
func TestOpenIndexFormat1(t *testing.T) {
	s := TestStore(t, Config{})
	fill(t, s)
	before := listing(t, s)
	dir := s.Dir()
	must(t, s.Close())
	writeIndexFormat1(t, dir)

	var log bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&log, nil))}
	s2, err := Open(dir, opts)
	must(t, err)
	if after := listing(t, s2); after != before {
		t.Errorf("tree after migration differs.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	lookupEveryName(t, s2, RootIno)
	r, err := s2.Check()
	must(t, err)
	if !r.OK() {
		t.Errorf("fsck after migration: %v", r.Problems)
	}
	must(t, s2.Close())
	if n := strings.Count(log.String(), "index migrated"); n != 1 {
		t.Errorf("migration logged %d lines, want 1:\n%s", n, log.String())
	}

	log.Reset()
	s3, err := Open(dir, opts)
	must(t, err)
	var format uint32
	must(t, s3.db.View(func(tx *bolt.Tx) error { format = ix{tx}.format(); return nil }))
	must(t, s3.Close())
	if format != IndexFormat || strings.Contains(log.String(), "index migrated") {
		t.Errorf("reopened: index format %d, want %d, log:\n%s", format, IndexFormat, log.String())
	}
}

// lookupEveryName looks up every name listed under dir, recursively.
func lookupEveryName(t *testing.T, s *Store, dir uint64) {
	t.Helper()
	ents, err := s.ReadDir(dir, DirPos{}, 1<<30)
	must(t, err)
	for _, e := range ents {
		a, err := s.Lookup(dir, e.Name)
		if err != nil || a.Ino != e.Ino {
			t.Errorf("lookup %q in %d: inode %d, %v; listed with inode %d", e.Name, dir, a.Ino, err, e.Ino)
		}
		if e.Mode&ModeType == ModeDir {
			lookupEveryName(t, s, e.Ino)
		}
	}
}

// TestOpenIndexFormatNewer: an index of a format newer than this code's
// is refused, not read with the wrong layout.
func TestOpenIndexFormatNewer(t *testing.T) {
	s := TestStore(t, Config{})
	dir := s.Dir()
	must(t, s.Close())
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error { return ix{tx}.putFormat(IndexFormat + 1) }))
	must(t, db.Close())
	if s2, err := Open(dir, TestOptions()); !errors.Is(err, ErrFormat) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("open an index of format %d: %v, want ErrFormat", IndexFormat+1, err)
	}
	db, err = bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error { return ix{tx}.putFormat(IndexFormat) }))
	must(t, db.Close())
}
