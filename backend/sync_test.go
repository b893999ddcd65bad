package backend

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// quietStore is a test store whose ticker never syncs during a test, so
// that the test's own Syncs are the only fsyncs.
func quietStore(t *testing.T) *Store {
	opts := TestOptions()
	opts.SyncInterval = time.Hour
	return testStoreWith(t, Config{}, opts)
}

// hookFdatasync replaces the journal's fsync for one test.
func hookFdatasync(t *testing.T, fn func(f *os.File) error) {
	old := fdatasync
	fdatasync = fn
	t.Cleanup(func() { fdatasync = old })
}

// TestGroupCommit: ops that wait while an fsync runs are made durable
// together by one more fsync, not one each.
func TestGroupCommit(t *testing.T) {
	s := quietStore(t)
	u, err := s.AddUser("erin", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	release := make(chan struct{})
	hookFdatasync(t, func(f *os.File) error {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-release
		}
		return f.Sync()
	})

	mkdirOp := func(name string) error {
		_, err := s.Mkdir(u.Ino, name, 0o700, 1, 1)
		return err
	}
	if err := mkdirOp("lead"); err != nil {
		t.Fatal(err)
	}
	leader := make(chan error, 1)
	go func() { leader <- s.Sync() }()
	waitFor(t, func() bool { s.sync.mu.Lock(); defer s.sync.mu.Unlock(); return s.sync.syncing })

	const followers = 8
	errs := make(chan error, followers)
	for i := 0; i < followers; i++ {
		if err := mkdirOp(fmt.Sprint("f", i)); err != nil {
			t.Fatal(err)
		}
		go func() { errs <- s.Sync() }()
	}
	waitFor(t, func() bool { s.sync.mu.Lock(); defer s.sync.mu.Unlock(); return s.sync.waiting == followers })
	close(release)
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < followers; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d fsyncs for one op and then %d waiting together, want 2", calls, followers)
	}
}

// TestFsyncErrorIsSticky: after a failed fsync no op is acknowledged as
// durable, even when a later fsync succeeds: the kernel may have dropped
// the pages the failed one was to write.
func TestFsyncErrorIsSticky(t *testing.T) {
	s := quietStore(t)
	u, err := s.AddUser("erin", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	fail := true
	hookFdatasync(t, func(f *os.File) error {
		if fail {
			fail = false
			return syscall.EIO
		}
		return f.Sync()
	})
	deliver(t, s, u.Ino, "lost", []byte("maybe on disk"))
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync after a failed fsync: %v, want EIO", err)
	}
	deliver(t, s, u.Ino, "later", []byte("later"))
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync after a failed and a good fsync: %v, want EIO", err)
	}
	if err := s.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close after a failed fsync: %v, want EIO", err)
	}
	// Reopened, recovery reads what the container holds: here, since the
	// failure was made up, both messages.
	s, err = Open(s.Dir(), TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"lost", "later"} {
		if _, err := s.Lookup(u.Ino, name); err != nil {
			t.Errorf("after reopening: %s: %v", name, err)
		}
	}
}

// waitFor polls cond until it holds, and fails the test if it has not
// after half a minute: a hang, not a slow machine.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("waited 30s for a condition that never held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTickerMakesOpsDurable: an op nobody syncs (a flag rename, a mkdir)
// is fsynced by the ticker within Options.SyncInterval.
func TestTickerMakesOpsDurable(t *testing.T) {
	opts := TestOptions()
	opts.SyncInterval = 20 * time.Millisecond
	s := testStoreWith(t, Config{}, opts)
	u, err := s.AddUser("erin", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	synced := 0
	hookFdatasync(t, func(f *os.File) error {
		mu.Lock()
		synced++
		mu.Unlock()
		return f.Sync()
	})
	if _, err := s.Mkdir(u.Ino, "unsynced", 0o700, 1, 1); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	seq := s.seq
	s.mu.Unlock()
	waitFor(t, func() bool { s.sync.mu.Lock(); defer s.sync.mu.Unlock(); return s.sync.durable >= seq })
	mu.Lock()
	defer mu.Unlock()
	if synced == 0 {
		t.Error("the op became durable without an fsync")
	}
}

// TestDeliveredSpoolIsRemoved: the spool file of a delivered
// message goes once the delivery is durable, with no later op or fsync to
// prompt it: after the last delivery of a burst nothing else comes. Under
// load about 1 delivery in 40 kept its spool file (5 MB of the store's
// disk for a 5 MB message) until the next fsync: the fsync woke the
// goroutine that removes spool files before raising the durable mark, and
// when that goroutine looked in between it found nothing due and slept.
func TestDeliveredSpoolIsRemoved(t *testing.T) {
	t.Run("durable raised after the last look", func(t *testing.T) {
		// What the race left: the delivery's op is fsynced, the
		// remover has looked before the mark was raised, and no
		// wake-up is pending (quietStore: no Sync has run, so none
		// was ever sent). Raising the mark, as an fsync's leader or a
		// container's seal does, must wake it.
		s := quietStore(t)
		u, err := s.AddUser("erin", 1, 1)
		must(t, err)
		ino := deliver(t, s, u.Ino, "lone", []byte("the only delivery"))
		s.mu.Lock()
		seq, f := s.seq, s.active.f
		s.mu.Unlock()
		must(t, fdatasync(f))
		s.sync.markDurable(seq)
		waitSpoolGone(t, s, ino)
	})
	t.Run("dropped after the fsync's pass", func(t *testing.T) {
		// A spool file scheduled for an op that is durable already
		// (Release of an orphan, whose check of the mark an fsync
		// overtook) must go without another fsync.
		s := quietStore(t)
		u, err := s.AddUser("erin", 1, 1)
		must(t, err)
		late := deliver(t, s, u.Ino, "late", []byte("dropped late"))
		s.sync.mu.Lock()
		d := s.sync.dropped
		s.sync.dropped = nil
		s.sync.mu.Unlock()
		if len(d) != 1 || d[0].ino != late {
			t.Fatalf("dropped after one commit: %+v, want inode %d", d, late)
		}
		// Removing another delivery's spool file shows that the
		// fsync's pass of the remover is done.
		seen := deliver(t, s, u.Ino, "seen", []byte("dropped in time"))
		must(t, s.Sync())
		waitSpoolGone(t, s, seen)
		s.dropSpoolAfter(d[0].seq, []uint64{late})
		waitSpoolGone(t, s, late)
	})
	t.Run("deliveries one by one", func(t *testing.T) {
		// The real interleaving, which no hook reaches: each
		// delivery synced alone, nothing after it.
		s := quietStore(t)
		u, err := s.AddUser("erin", 1, 1)
		must(t, err)
		for i := range 500 {
			ino := deliver(t, s, u.Ino, fmt.Sprint("m", i), []byte(fmt.Sprint("message ", i)))
			must(t, s.Sync())
			waitSpoolGone(t, s, ino)
		}
	})
}

// waitSpoolGone waits until the spool file of ino is removed, and fails
// the test if it is still there after half a minute: a file left for
// good, not a slow machine.
func waitSpoolGone(t *testing.T, s *Store, ino uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		_, err := os.Stat(s.spoolPath(ino))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool file of inode %d still there 30 s after its op was durable (stat: %v)", ino, err)
		}
	}
}

// TestFailedSealMarksNothingDurable: a seal whose next container cannot
// be created (here a stray file has its name; a full disk does the same)
// is cut back with its sequence number, which the next record takes
// again. That record must still be fsynced before it counts as durable:
// the seal's fsync must not have marked its number durable already.
func TestFailedSealMarksNothingDurable(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10})
	u, err := s.AddUser("frank", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	stray := s.files.path(2)
	if err := os.WriteFile(stray, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var commitErr error
	for n := 0; n < 10 && commitErr == nil; n++ {
		a, err := s.Create(u.Ino, fmt.Sprintf("m%d", n), 0o600, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.spoolPath(a.Ino), bytes.Repeat([]byte{byte(n)}, 20000), 0o600); err != nil {
			t.Fatal(err)
		}
		commitErr = s.Commit(a.Ino)
	}
	if commitErr == nil {
		t.Fatal("ten 20,000-byte messages in a 64 KiB container and no seal failed")
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}
	fsyncs := 0
	hookFdatasync(t, func(f *os.File) error { fsyncs++; return f.Sync() })
	if _, err := s.Mkdir(u.Ino, "after", 0o700, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if fsyncs == 0 {
		t.Errorf("after a failed seal (%v), a new record counted as durable with no fsync", commitErr)
	}
}
