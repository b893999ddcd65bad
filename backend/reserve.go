package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/packdir/packdir/backend/disk"
)

// The reserve is the file "reserve" in the store: disk space taken in
// advance (fallocate) that only what frees or keeps space may use, as
// ext4 keeps blocks for root. Deleting, renaming and changing attributes
// of mail, closing the store (the state file), opening it (recovery) and
// compaction append a few records and grow the index; on a disk that new
// mail has filled they get ENOSPC, release the reserve and try once more.
// Everything that adds data (create, link, commit, copy-on-write, writes
// to spooled files, users, quotas) first makes the reserve whole again,
// and gets ErrNoSpace if it cannot: new mail fails before the reserve is
// touched, and stays refused until compaction or the admin frees space.
// FORMAT.md, "The reserve", says how big it is and why.

// minReserve is the smallest reserve: enough for a few hundred thousand
// deletes and the state file on any store.
const minReserve = 16 << 20

func reservePath(dir string) string { return filepath.Join(dir, "reserve") }

// reserve tracks the reserve file of an open store.
type reserve struct {
	mu   sync.Mutex
	have int64 // bytes allocated to the file
	// whole is set while the file holds what it should; checked without mu
	// on every write of new data.
	whole atomic.Bool
	// lent is set while compaction may use the reserve: it is not refilled
	// before the compaction ends, or new mail could take back what the
	// compaction needs.
	lent atomic.Bool
}

// reserveTarget is the size the reserve should have: at least the disk
// space the index takes, which bounds the checkpoint that compaction
// must write before it can delete anything. (Not the index's size:
// bbolt grows the file ahead of its pages, sparsely.)
func (s *Store) reserveTarget() int64 {
	fi, err := os.Stat(s.indexPath())
	if err != nil {
		return minReserve
	}
	return max(minReserve, disk.Allocated(fi))
}

// loadReserve learns how much the reserve file holds: the blocks it has,
// not its size, since a sparse file reserves nothing.
func (s *Store) loadReserve() {
	fi, err := os.Lstat(reservePath(s.dir))
	if err == nil && fi.Mode().IsRegular() {
		s.reserve.have = min(fi.Size(), disk.Allocated(fi))
	}
}

// fillReserve makes the reserve whole, or reports ErrNoSpace.
func (s *Store) fillReserve() error {
	r := &s.reserve
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.fillReserveLocked()
}

func (s *Store) fillReserveLocked() error {
	r := &s.reserve
	want := s.reserveTarget()
	if r.have >= want {
		r.whole.Store(true)
		return nil
	}
	r.whole.Store(false)
	if r.lent.Load() {
		return fmt.Errorf("%w: compaction is using the reserve", ErrNoSpace)
	}
	f, err := os.OpenFile(reservePath(s.dir), os.O_RDWR|os.O_CREATE|disk.NoFollow, 0o600)
	if err != nil {
		return fmt.Errorf("backend: reserve: %w", err)
	}
	defer f.Close()
	if err := disk.Allocate(f, want); err != nil {
		// Give back what a partial allocation took.
		f.Truncate(r.have)
		if disk.NoSpace(err) {
			return fmt.Errorf("%w: the disk is full down to the store's reserve of %d bytes", ErrNoSpace, want)
		}
		return fmt.Errorf("backend: reserve: %w", err)
	}
	r.have = want
	r.whole.Store(true)
	return nil
}

// CheckSpace is called before data is added to the store: it reports
// ErrNoSpace unless the reserve is whole or can be made whole.
func (s *Store) CheckSpace() error {
	if s.reserve.whole.Load() {
		return nil
	}
	return s.fillReserve()
}

// checkSpaceFor is CheckSpace when adding data, nil otherwise.
func (s *Store) checkSpaceFor(adding bool) error {
	if !adding {
		return nil
	}
	return s.CheckSpace()
}

// releaseReserve empties the reserve file, so that what was reserved
// can be used, and reports whether it held anything.
func (s *Store) releaseReserve() bool {
	r := &s.reserve
	r.mu.Lock()
	defer r.mu.Unlock()
	r.whole.Store(false)
	if !releaseReserveFile(s.dir) {
		return false
	}
	r.have = 0
	s.log.Warn("the disk is full: the store's reserve is released for deletes, unmount and compaction; new mail gets ENOSPC until space is freed (delete mail, then packdir compact)", "store", s.dir)
	return true
}

// releaseReserveFile truncates the reserve file of the store in dir to
// nothing and reports whether it held anything.
func releaseReserveFile(dir string) bool {
	f, err := os.OpenFile(reservePath(dir), os.O_WRONLY|disk.NoFollow, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false
	}
	return f.Truncate(0) == nil
}

// spare runs fn, which frees or keeps space, and if the disk is full runs
// it again with the reserve released.
func (s *Store) spare(fn func() error) error {
	err := fn()
	if s.retryable(err) && s.releaseReserve() {
		err = fn()
	}
	return err
}

// retryable reports whether err is a full disk and nothing of the failed
// attempt stayed in the journal.
func (s *Store) retryable(err error) bool {
	var journaled journaledError
	return disk.NoSpace(err) && !errors.As(err, &journaled)
}

// lendReserve lets a compaction use the reserve until the returned
// function is called, which refills it if it can.
func (s *Store) lendReserve() func() {
	r := &s.reserve
	r.lent.Store(true)
	return func() {
		r.lent.Store(false)
		if err := s.fillReserve(); err != nil {
			s.log.Warn("the store's reserve is not whole: new mail gets ENOSPC", "err", err)
		}
	}
}
