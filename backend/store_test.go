package backend

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/packdir/packdir/backend/record"
)

// deliver creates name in dir with data, commits it, and returns its inode.
func deliver(t *testing.T, s *Store, dir uint64, name string, data []byte) uint64 {
	t.Helper()
	a, err := s.Create(dir, name, 0o600, 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.spoolPath(a.Ino), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(a.Ino); err != nil {
		t.Fatal(err)
	}
	return a.Ino
}

func mkdir(t *testing.T, s *Store, parent uint64, name string) uint64 {
	t.Helper()
	a, err := s.Mkdir(parent, name, 0o700, 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return a.Ino
}

func readMessage(t *testing.T, s *Store, ino uint64) []byte {
	t.Helper()
	m, err := s.OpenMessage(ino)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

func TestCommitRenameLinkUnlink(t *testing.T) {
	s := TestStore(t, Config{})
	u, err := s.AddUser("alice", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	tmp, cur := mkdir(t, s, u.Ino, "tmp"), mkdir(t, s, u.Ino, "cur")
	msg := []byte("Subject: hi\n\nbody\n")
	ino := deliver(t, s, tmp, "1.M1.host", msg)
	if err := s.Rename(tmp, "1.M1.host", cur, "1.M1.host:2,S", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	a, err := s.Lookup(cur, "1.M1.host:2,S")
	if err != nil || a.Ino != ino || !a.Sealed || a.Size != uint64(len(msg)) {
		t.Fatalf("lookup after rename: %+v %v", a, err)
	}
	if _, err := s.Link(ino, cur, "copy"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Getattr(ino); a.Nlink != 2 {
		t.Fatalf("nlink after link = %d, want 2", a.Nlink)
	}
	if err := s.Unlink(cur, "1.M1.host:2,S"); err != nil {
		t.Fatal(err)
	}
	if got := readMessage(t, s, ino); !bytes.Equal(got, msg) {
		t.Fatalf("read %q, want %q", got, msg)
	}
	if err := s.Rmdir(u.Ino, "cur"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir of non-empty dir: %v, want ErrNotEmpty", err)
	}
	if a, _ := s.Getattr(u.Ino); a.Nlink != 4 {
		t.Fatalf("user dir nlink = %d, want 4", a.Nlink)
	}
}

func TestDeduplicatesPayloads(t *testing.T) {
	s := TestStore(t, Config{})
	u, _ := s.AddUser("bob", 1, 1)
	msg := bytes.Repeat([]byte("x"), 10000)
	for _, name := range []string{"a", "b", "c"} {
		deliver(t, s, u.Ino, name, msg)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 3 || st.Payloads != 1 || st.ContainerBytes > 12000 {
		t.Fatalf("stats %+v: want 3 messages sharing 1 payload", st)
	}
}

func TestReopenReplaysJournal(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := s.AddUser("carol", 1, 1)
	ino := deliver(t, s, u.Ino, "m", []byte("hello"))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := readMessage(t, s, ino); string(got) != "hello" {
		t.Fatalf("after reopen: %q", got)
	}
	s.Close()
	CheckStore(t, dir)
}

func TestSealsAndStoreFull(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10, MaxContainers: 2})
	u, _ := s.AddUser("dave", 1, 1)
	n := 0
	for ; n < 100; n++ {
		a, err := s.Create(u.Ino, string(rune('a'+n%26))+string(rune('a'+n/26)), 0o600, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.spoolPath(a.Ino), bytes.Repeat([]byte{byte(n)}, 20000), 0o600)
		if err := s.Commit(a.Ino); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("commit %d: %v, want ErrNoSpace", n, err)
			}
			break
		}
	}
	if n < 4 || n > 7 {
		t.Fatalf("store full after %d messages of 20000 bytes in 2 x 64 KiB", n)
	}
	// A full store can still be emptied.
	if err := s.Unlink(u.Ino, "aa"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentCommitsShareSync(t *testing.T) {
	s := TestStore(t, Config{})
	u, _ := s.AddUser("erin", 1, 1)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				name := string(rune('a'+w)) + string(rune('a'+i%26)) + string(rune('a'+i/26))
				a, err := s.Create(u.Ino, name, 0o600, 1, 1)
				if err != nil {
					t.Error(err)
					return
				}
				os.WriteFile(s.spoolPath(a.Ino), []byte(name), 0o600)
				if err := s.Commit(a.Ino); err != nil {
					t.Error(err)
				}
				if err := s.Sync(); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if st, _ := s.Stats(); st.Messages != 400 {
		t.Fatalf("messages = %d, want 400", st.Messages)
	}
}

// TestFailedUpdateLeavesNoRecord: when the index transaction fails after
// an op was journaled, the record is cut off, so the op that returned an
// error does not come back on replay.
func TestFailedUpdateLeavesNoRecord(t *testing.T) {
	s := TestStore(t, Config{})
	u, _ := s.AddUser("frank", 1, 1)
	s.mu.Lock()
	before, seq := s.active.size, s.seq
	failed := errors.New("index write failed")
	err := s.updateLocked(func(x ix) error {
		op := &record.Op{Code: record.OpCreate, Parent: u.Ino, Name: "ghost", Ino: nextIno(x), Mode: ModeDir | 0o700}
		if err := s.applyLocked(x, op, &effects{}); err != nil {
			return err
		}
		return failed
	})
	after, seqAfter := s.active.size, s.seq
	s.mu.Unlock()
	if !errors.Is(err, failed) || after != before || seqAfter != seq {
		t.Fatalf("err %v, size %d -> %d, seq %d -> %d", err, before, after, seq, seqAfter)
	}
	dir := s.Dir()
	must(t, s.Close())
	must(t, os.Remove(filepath.Join(dir, "index.db")))
	s2, err := Open(dir, TestOptions())
	must(t, err)
	defer s2.Close()
	if _, err := s2.Lookup(u.Ino, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed op reappeared after rebuild: %v", err)
	}
}

// TestLargePayloadsKeepTheirPlace commits messages over 1 MiB between
// small ones: each must stay readable where the index says it is, after a
// reopen too (the append buffer of a large record was dropped before its
// length was counted, and the next record overwrote it).
func TestLargePayloadsKeepTheirPlace(t *testing.T) {
	s := TestStore(t, Config{})
	u, _ := s.AddUser("bob", 1, 1)
	var inos []uint64
	var msgs [][]byte
	for i, size := range []int{5000, 1 << 20, 1<<20 + 100, 2 << 20, 4000} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, size)
		inos = append(inos, deliver(t, s, u.Ino, string(rune('a'+i)), msg))
		msgs = append(msgs, msg)
	}
	for i, ino := range inos {
		if got := readMessage(t, s, ino); !bytes.Equal(got, msgs[i]) {
			t.Errorf("message %d of %d bytes: read back %d different bytes", i, len(msgs[i]), len(got))
		}
	}
}
