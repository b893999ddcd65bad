package backend

import (
	"os"

	"github.com/packdir/packdir/maildir"
	bolt "go.etcd.io/bbolt"
)

// A file written in place in new/ or cur/ is spooled until fs seals it,
// once it has gone unchanged for a moment or at unmount. One whose seal
// failed (a full store, or grown past the limits by a packdir that did
// not check writes there) stays spooled, not in any container: Unsealed
// finds them from the index, for stats and fsck, so that none goes
// unnoticed.

// UnsealedFile is a spooled file named in a new/ or cur/ directory.
type UnsealedFile struct {
	Ino  uint64 `json:"ino"`
	Path string `json:"path"` // from the store root, as "/alice/.Trash/cur/name"
	Size uint64 `json:"size"`
}

// Unsealed lists the spooled files named in new/ or cur/.
func (s *Store) Unsealed() ([]UnsealedFile, error) {
	var out []UnsealedFile
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		spooled, err := spooledFiles(x)
		if err == nil {
			out, err = s.unsealedFiles(x, spooled)
		}
		return err
	})
	return out, err
}

// spooledFiles returns the inode numbers of the spooled files.
func spooledFiles(x ix) (map[uint64]bool, error) {
	spooled := map[uint64]bool{}
	err := x.tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
		if n, err := decodeInode(v); err == nil && n.spooled() {
			spooled[inoFromKey(k)] = true
		}
		return nil // a damaged inode is Check's to report
	})
	return spooled, err
}

// unsealedFiles finds the names in new/ or cur/ of the inodes in spooled;
// a file with several such names is listed under each.
func (s *Store) unsealedFiles(x ix, spooled map[uint64]bool) ([]UnsealedFile, error) {
	out := []UnsealedFile{}
	if len(spooled) == 0 {
		return out, nil
	}
	dirs, names, err := namedFiles(x, func(e *dirName) bool { return spooled[e.ino] })
	for _, e := range names {
		if d, ok := dirs[e.parent]; ok && maildir.IsMessageDir(d.name) {
			out = append(out, UnsealedFile{Ino: e.ino, Path: pathOf(dirs, e), Size: s.spoolSize(e.ino)})
		}
	}
	return out, err
}

// spoolSize is the size of ino's spool file, which is authoritative for
// a spooled file; 0 if it is missing (Check reports that).
func (s *Store) spoolSize(ino uint64) uint64 {
	fi, err := os.Stat(s.spoolPath(ino))
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}
