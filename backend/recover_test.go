package backend

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// listing describes every name in a store: path, type, size, mode, owner,
// mtime, which names share an inode, and a hash of each file's bytes.
func listing(t *testing.T, s *Store) string {
	t.Helper()
	var lines []string
	groups := map[uint64]string{}
	var walk func(dir uint64, path string)
	walk = func(dir uint64, path string) {
		ents, err := s.ReadDir(dir, DirPos{}, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := path + "/" + e.Name
			a, err := s.Getattr(e.Ino)
			if err != nil {
				t.Fatal(err)
			}
			first, ok := groups[e.Ino]
			if !ok {
				groups[e.Ino] = p
				first = p
			}
			sum := ""
			if a.Sealed {
				sum = fmt.Sprintf("%x", sha256.Sum256(readMessage(t, s, e.Ino)))
			}
			lines = append(lines, fmt.Sprintf("%s mode=%o uid=%d nlink=%d size=%d mtime=%d inode-of=%s %s",
				p, a.Mode, a.UID, a.Nlink, a.Size, a.Mtime, first, sum))
			if a.IsDir() {
				walk(e.Ino, p)
			}
		}
	}
	walk(RootIno, "")
	sort.Strings(lines)
	return fmt.Sprintf("%d names\n%s", len(lines), bytes.Join(toBytes(lines), []byte("\n")))
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// fill makes a store with users, folders, flags, hard links, renames,
// deletions, a copy-on-write change and side files.
func fill(t *testing.T, s *Store) {
	u, _ := s.AddUser("alice", 1000, 1000)
	cur, tmp := mkdir(t, s, u.Ino, "cur"), mkdir(t, s, u.Ino, "tmp")
	trash := mkdir(t, s, u.Ino, ".Trash")
	tcur := mkdir(t, s, trash, "cur")
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("%d.M%d.host", 1000+i, i)
		deliver(t, s, tmp, name, []byte(fmt.Sprintf("Subject: %d\n\n%s", i%7, bytes.Repeat([]byte("x"), i*100))))
		if err := s.Rename(tmp, name, cur, name+":2,S", 0); err != nil {
			t.Fatal(err)
		}
	}
	must(t, s.Rename(cur, "1001.M1.host:2,S", cur, "1001.M1.host:2,FS", 0))
	must(t, s.Rename(cur, "1002.M2.host:2,S", tcur, "1002.M2.host:2,S", 0))
	if _, err := s.Link(lookup(t, s, cur, "1003.M3.host:2,S"), tcur, "copy"); err != nil {
		t.Fatal(err)
	}
	must(t, s.Unlink(cur, "1004.M4.host:2,S"))
	a, _ := s.Create(u.Ino, "dovecot-uidlist", 0o600, 1000, 1000)
	must(t, os.WriteFile(s.spoolPath(a.Ino), []byte("3 V1 N51\n"), 0o600))
	ino := lookup(t, s, cur, "1005.M5.host:2,S")
	must(t, s.Spool(ino, false))
	must(t, os.WriteFile(s.spoolPath(ino), []byte("changed"), 0o600))
	must(t, s.Commit(ino))
	if _, err := s.Setattr(lookup(t, s, cur, "1006.M6.host:2,S"), SetAttr{Mask: SetMode | SetMtime, Mode: 0o640, Mtime: 1e18}); err != nil {
		t.Fatal(err)
	}
	must(t, s.Sync())
}

func lookup(t *testing.T, s *Store, dir uint64, name string) uint64 {
	t.Helper()
	a, err := s.Lookup(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return a.Ino
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRebuildFromContainers(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10}) // several sealed containers
	fill(t, s)
	before := listing(t, s)
	dir := s.Dir()
	must(t, s.Close())
	must(t, os.Remove(filepath.Join(dir, "index.db")))
	s2, err := Open(dir, TestOptions())
	must(t, err)
	after := listing(t, s2)
	must(t, s2.Close())
	if before != after {
		t.Fatalf("rebuilt index differs.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if st, _ := os.ReadDir(filepath.Join(dir, "containers")); len(st) < 2 {
		t.Fatalf("want several containers, got %d", len(st))
	}
}

// TestTornTailIsCut cuts the last container inside its last record at
// every offset: reopening keeps every earlier record and the store checks
// clean.
func TestTornTailIsCut(t *testing.T) {
	s := TestStore(t, Config{})
	u, _ := s.AddUser("bob", 1, 1)
	deliver(t, s, u.Ino, "keep", []byte("first message"))
	must(t, s.Sync())
	path := s.files.path(s.active.num)
	s.mu.Lock()
	goodEnd := s.active.size
	s.mu.Unlock()
	deliver(t, s, u.Ino, "torn", []byte("second message, to be torn"))
	must(t, s.Close())
	full, err := os.ReadFile(path)
	must(t, err)
	dir := s.Dir()
	for cut := goodEnd; cut < int64(len(full)); cut += 7 {
		must(t, os.WriteFile(path, full[:cut], 0o600))
		must(t, os.Remove(filepath.Join(dir, "index.db")))
		s2, err := Open(dir, TestOptions())
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if _, err := s2.Lookup(u.Ino, "keep"); err != nil {
			t.Fatalf("cut at %d: earlier message lost: %v", cut, err)
		}
		r, err := s2.Check()
		must(t, err)
		if !r.OK() {
			t.Fatalf("cut at %d: %v", cut, r.Problems)
		}
		must(t, s2.Close())
	}
	must(t, os.WriteFile(path, full, 0o600))
	must(t, os.Remove(filepath.Join(dir, "index.db")))
}
