package backend

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSingleInstance: one message delivered into 500 folders of 5 users
// costs one stored copy; hard links are references to one inode; the
// stored bytes become dead only when the last name goes, and compaction
// then reclaims them.
func TestSingleInstance(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10})
	msg := []byte("Subject: to the list\n\n" + string(bytes.Repeat([]byte("list traffic\n"), 300)))
	other := []byte("Subject: something else\n\nbody\n")
	u, err := s.AddUser("postmaster", 1000, 1000)
	must(t, err)
	deliver(t, s, u.Ino, "other", other)
	before, err := s.Stats()
	must(t, err)
	var folders []uint64
	for i := 0; i < 500; i++ {
		if i%100 == 0 {
			if u, err = s.AddUser(fmt.Sprintf("member%d", i/100), uint32(2000+i/100), 100); err != nil {
				t.Fatal(err)
			}
		}
		f := mkdir(t, s, u.Ino, fmt.Sprintf(".List%d", i))
		folders = append(folders, f)
		deliver(t, s, f, "msg", msg)
	}
	must(t, s.Sync())
	after, err := s.Stats()
	must(t, err)
	if after.Payloads != before.Payloads+1 {
		t.Fatalf("%d distinct bodies after 500 deliveries of one message, %d before", after.Payloads, before.Payloads)
	}
	if got := after.LiveBytes - before.LiveBytes; got > uint64(len(msg))+64 {
		t.Fatalf("500 deliveries of a %d-byte message take %d live bytes", len(msg), got)
	}
	if after.DedupSavedBytes != 499*uint64(len(msg)) {
		t.Fatalf("dedup saves %d bytes, want 499 copies of %d", after.DedupSavedBytes, len(msg))
	}
	// Hard links: one inode, nlink 2, no new payload reference.
	ino := lookup(t, s, folders[0], "msg")
	_, err = s.Link(ino, folders[1], "link")
	must(t, err)
	if a, _ := s.Getattr(ino); a.Nlink != 2 || lookup(t, s, folders[1], "link") != ino {
		t.Fatalf("link: nlink %d", a.Nlink)
	}
	// Delete every name but one: the body stays live.
	must(t, s.Unlink(folders[0], "msg"))
	for _, f := range folders[1:] {
		must(t, s.Unlink(f, "msg"))
	}
	st, err := s.Stats()
	must(t, err)
	if st.LiveBytes != after.LiveBytes {
		t.Fatalf("live bytes %d with one name left, %d before", st.LiveBytes, after.LiveBytes)
	}
	if got := readMessage(t, s, ino); !bytes.Equal(got, msg) {
		t.Fatal("last name reads wrong bytes")
	}
	must(t, s.Unlink(folders[1], "link"))
	st, err = s.Stats()
	must(t, err)
	if st.LiveBytes != before.LiveBytes {
		t.Fatalf("live bytes %d after the last name went, %d before the deliveries", st.LiveBytes, before.LiveBytes)
	}
	// The folders go too, so that the checkpoint compaction writes is
	// small next to the dead ops of 500 deliveries.
	for i := range folders {
		must(t, s.Rmdir(lookup(t, s, RootIno, fmt.Sprintf("member%d", i/100)), fmt.Sprintf(".List%d", i)))
	}
	res, err := s.Compact(0)
	must(t, err)
	final, err := s.Stats()
	must(t, err)
	if res.Containers == 0 || final.ContainerBytes >= st.ContainerBytes {
		t.Fatalf("compaction: %+v, container bytes %d -> %d", res, st.ContainerBytes, final.ContainerBytes)
	}
}

// deliverAs delivers data as a file of uid into dir.
func deliverAs(t *testing.T, s *Store, dir uint64, name string, data []byte, uid uint32) uint64 {
	t.Helper()
	a, err := s.Create(dir, name, 0o600, uid, uid)
	must(t, err)
	must(t, os.WriteFile(s.spoolPath(a.Ino), data, 0o600))
	must(t, s.Commit(a.Ino))
	return a.Ino
}

// payloadKeys describes the payloads bucket (key, refs, container bytes
// it takes) and which payload each sealed inode holds.
func payloadKeys(t *testing.T, s *Store) string {
	t.Helper()
	var lines []string
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketPayloads).ForEach(func(k, v []byte) error {
			p, err := decodePayload(v)
			if err == nil && p.Refs > 0 {
				lines = append(lines, fmt.Sprintf("payload %x refs %d length %d", k, p.Refs, p.Length))
			}
			return err
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
			n, err := decodeInode(v)
			if err == nil && n.sealed() {
				lines = append(lines, fmt.Sprintf("inode %d uid %d holds %x", binary.BigEndian.Uint64(k), n.UID, n.Payload))
			}
			return err
		})
	})
	must(t, err)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestFault11DedupRebuild: in a store that scopes de-duplication per user,
// one message held by two uids is two payloads, and one uid's copies (two
// users sharing a uid among them) are one. A chown keeps the payload. The
// index rebuilt from the containers, past a compaction's checkpoint, has
// the same payload keys, references and inodes.
func TestFault11DedupRebuild(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10, Dedup: DedupUser})
	msg := []byte("Subject: to the list\n\n" + strings.Repeat("list traffic\n", 1000))
	alice, err := s.AddUser("alice", 1000, 1000)
	must(t, err)
	bob, err := s.AddUser("bob", 1001, 1001)
	must(t, err)
	carol, err := s.AddUser("carol", 1000, 1000) // a virtual user sharing alice's uid
	must(t, err)
	a1 := deliverAs(t, s, alice.Ino, "a1", msg, 1000)
	deliverAs(t, s, mkdir(t, s, alice.Ino, ".Lists"), "a2", msg, 1000)
	deliverAs(t, s, carol.Ino, "c1", msg, 1000)
	b1 := deliverAs(t, s, bob.Ino, "b1", msg, 1001)
	st, err := s.Stats()
	must(t, err)
	if st.Payloads != 2 || st.DedupScope != DedupUser {
		t.Fatalf("uid 1000's three copies and uid 1001's one are %d payloads (scope %q), want 2", st.Payloads, st.DedupScope)
	}
	if a, b := mustAttr(t, s, a1), mustAttr(t, s, b1); a.Payload == b.Payload {
		t.Fatal("alice's and bob's copies hold one payload")
	}
	if got := readMessage(t, s, b1); !bytes.Equal(got, msg) {
		t.Fatal("bob's copy reads wrong bytes")
	}
	// A chown moves the quota, not the payload: bob's next copy is new.
	_, err = s.Setattr(a1, SetAttr{Mask: SetUID | SetGID, UID: 1001, GID: 1001})
	must(t, err)
	// Dead records (an unlinked message, many flag renames), so that
	// compaction rewrites containers and writes a checkpoint.
	deliverAs(t, s, bob.Ino, "gone", []byte("Subject: gone\n\n"+strings.Repeat("y", 40<<10)), 1001)
	must(t, s.Unlink(bob.Ino, "gone"))
	for i := 0; i < 300; i++ {
		must(t, s.Rename(bob.Ino, "b1", bob.Ino, fmt.Sprintf("b1:2,%d", i), 0))
		must(t, s.Rename(bob.Ino, fmt.Sprintf("b1:2,%d", i), bob.Ino, "b1", 0))
	}
	must(t, s.Sync())
	res, err := s.Compact(1)
	must(t, err)
	if res.Containers == 0 {
		t.Fatalf("compaction rewrote nothing: %+v", res)
	}
	deliverAs(t, s, bob.Ino, "b2", msg, 1001)
	before := payloadKeys(t, s)
	dir := s.Dir()
	must(t, s.Close())
	must(t, os.Remove(filepath.Join(dir, "index.db")))
	s2, err := Open(dir, TestOptions())
	must(t, err)
	defer s2.Close()
	if after := payloadKeys(t, s2); after != before {
		t.Fatalf("rebuilt payloads differ.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := strings.Count(before, "payload "); n != 2 {
		t.Fatalf("%d payloads after the rebuild, want alice's and bob's:\n%s", n, before)
	}
}

func mustAttr(t *testing.T, s *Store, ino uint64) Attr {
	t.Helper()
	a, err := s.Getattr(ino)
	must(t, err)
	return a
}

// TestFault11DedupScopeConfig: a new store scopes de-duplication per user
// unless told otherwise; a store.json written before the choice existed
// keeps the store-wide scope those stores had; an unknown scope is
// refused.
func TestFault11DedupScopeConfig(t *testing.T) {
	dir := t.TempDir()
	must(t, Init(dir, Config{}))
	if got := readDedup(t, dir); got != DedupUser {
		t.Fatalf("a new store has scope %q, want %q", got, DedupUser)
	}
	b, err := os.ReadFile(filepath.Join(dir, "store.json"))
	must(t, err)
	var raw map[string]any
	must(t, json.Unmarshal(b, &raw))
	delete(raw, "dedup")
	b, err = json.Marshal(raw)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "store.json"), b, 0o600))
	if got := readDedup(t, dir); got != DedupStore {
		t.Fatalf("a store.json without a scope reads as %q, want %q", got, DedupStore)
	}
	if err := Init(t.TempDir(), Config{Dedup: "folder"}); err == nil {
		t.Fatal("init accepted de-duplication scope \"folder\"")
	}
}

func readDedup(t *testing.T, dir string) string {
	t.Helper()
	s, err := Open(dir, TestOptions())
	must(t, err)
	defer s.Close()
	return s.Config().Dedup
}
