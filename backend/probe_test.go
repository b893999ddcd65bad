package backend

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestProbeStoreLockSurvivesIndexRemoval: a store is open in one process
// at a time even when index.db is removed under the one that has it open
// (an admin forcing a rebuild the wrong way). Before, the lock was
// bbolt's flock on index.db: after `rm index.db` a second mount created a
// new index, rebuilt it and ran beside the first; both appended to the
// same active container, and of 40 deliveries acknowledged through the
// two mounts, 20 were gone after a remount, with fsck saying "no problems
// found". A read-only open (fsck) must wait its turn too.
func TestProbeStoreLockSurvivesIndexRemoval(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Remove(filepath.Join(dir, "index.db")); err != nil {
		t.Fatal(err)
	}
	for _, readOnly := range []bool{false, true} {
		opts := TestOptions()
		opts.ReadOnly = readOnly
		s2, err := Open(dir, opts)
		if err == nil {
			s2.Close()
		}
		if !errors.Is(err, ErrInUse) {
			t.Errorf("second open (read-only %v) with index.db removed under the first: %v, want %v", readOnly, err, ErrInUse)
		}
	}
}
