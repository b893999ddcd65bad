package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKernelInodesBounded: past Options.MaxInodes files the kernel is
// asked to forget the oldest, so the daemon's nodes stay bounded however
// many messages are listed and stat'ed; every name still resolves to the
// same inode and bytes afterwards, hard links included. Contract:
// "readdir + stat of cur/ with 1M entries" (the daemon's memory).
func TestKernelInodesBounded(t *testing.T) {
	t.Parallel()
	const max, total = 100, 1000
	mnt, _ := mountT(t, Options{MaxInodes: max})
	fsys := mountOf(t).fsys
	msg := func(i int) []byte { return []byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)) }
	inos := map[string]uint64{}
	for i := 0; i < total; i++ {
		name := fmt.Sprintf("1700000000.M%dP1.host:2,S", i)
		p := deliver(t, mnt, "cur", name, msg(i))
		inos[name] = lstat(t, p).Ino
	}
	linked := filepath.Join(mnt, ".Trash", "cur", "1700000000.M0P1.host:2,S")
	if err := os.Link(filepath.Join(mnt, "cur", "1700000000.M0P1.host:2,S"), linked); err != nil {
		t.Fatal(err)
	}
	for _, name := range names(t, filepath.Join(mnt, "cur")) {
		lstat(t, filepath.Join(mnt, "cur", name))
	}
	// FORGETs come after the prune notifications, asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for fsys.evict.count() > max {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel holds %d file nodes after listing %d files, want at most %d", fsys.evict.count(), total, max)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < total; i++ {
		name := fmt.Sprintf("1700000000.M%dP1.host:2,S", i)
		p := filepath.Join(mnt, "cur", name)
		if st := lstat(t, p); st.Ino != inos[name] {
			t.Errorf("%s: inode %d after pruning, was %d", name, st.Ino, inos[name])
		}
		checkContent(t, p, msg(i))
	}
	st := lstat(t, linked)
	if st.Ino != inos["1700000000.M0P1.host:2,S"] || st.Nlink != 2 {
		t.Errorf("hard link after pruning: inode %d nlink %d, want %d and 2", st.Ino, st.Nlink, inos["1700000000.M0P1.host:2,S"])
	}
}
