package backend

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// The spool holds the bytes of files that are not sealed messages, one
// file per inode, named by the inode number in hex.

func (s *Store) spoolPath(ino uint64) string {
	return filepath.Join(s.dir, "spool", fmt.Sprintf("%016x", ino))
}

// OpenSpool opens the spool file of a spooled inode with flag (os.O_RDONLY,
// os.O_RDWR, ...). The caller reads and writes it directly.
func (s *Store) OpenSpool(ino uint64, flag int) (*os.File, error) {
	f, err := openFile(s.spoolPath(ino), flag&^(os.O_CREATE|os.O_EXCL|os.O_TRUNC), 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := s.spoolGone(ino); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("backend: spool file of inode %d: %w", ino, ErrNotFound)
	}
	return f, err
}

// spoolGone tells why the spool file of ino was not there: nil if the
// inode was sealed or dropped meanwhile (the caller looks again), and
// ErrSpoolLost if the index still has it spooled. Under s.mu that is
// damage, not a race: an op creates the spool file before the index
// names it, and the remover deletes only under s.mu files the index no
// longer names. The caller must not hold s.mu or s.holds.mu.
func (s *Store) spoolGone(ino uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isSpooled(ino) {
		return nil
	}
	path := s.spoolPath(ino)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("%w: inode %d, %s", ErrSpoolLost, ino, path)
}

// isSpooled reports whether ino is a live spooled file; the caller holds s.mu.
func (s *Store) isSpooled(ino uint64) bool {
	spooled := false
	s.db.View(func(tx *bolt.Tx) error {
		n, err := ix{tx}.inode(ino)
		spooled = err == nil && n.spooled()
		return nil
	})
	return spooled
}

// removeOrphanSpool removes spool files that no spooled inode refers to:
// leftovers of a crash between writing a spool file and journaling it,
// or of an op whose spool file was not yet removed. A spooled inode whose
// file is missing gets an empty one, and a warning.
func (s *Store) removeOrphanSpool() error {
	dir := filepath.Join(s.dir, "spool")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	have := map[uint64]bool{}
	removed := 0
	for _, e := range entries {
		ino, err := strconv.ParseUint(e.Name(), 16, 64)
		if err == nil && len(e.Name()) == 16 && s.isSpooled(ino) {
			have[ino] = true
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("backend: %w", err)
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("removed spool files that no file refers to (left by a crash)", "files", removed)
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
			n, err := decodeInode(v)
			if err != nil || !n.spooled() {
				return err
			}
			ino := inoFromKey(k)
			if have[ino] {
				return nil
			}
			s.log.Warn("spool file missing: recreated it empty, its bytes are lost", "ino", ino, "path", s.spoolPath(ino))
			f, err := openFile(s.spoolPath(ino), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			return f.Close()
		})
	})
}

// copyPayloadToSpool writes the sealed bytes of ino into a new spool file,
// durably, before the spool op that makes the file authoritative.
func (s *Store) copyPayloadToSpool(ino uint64, m *Message, truncate bool) error {
	path := s.spoolPath(ino)
	tmp := path + ".cow"
	f, err := openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if !truncate {
		_, err = io.Copy(f, io.NewSectionReader(m, 0, m.Size()))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backend: copy inode %d to the spool: %w", ino, err)
	}
	return nil
}
