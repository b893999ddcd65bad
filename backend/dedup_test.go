package backend

import (
	"bytes"
	"fmt"
	"testing"
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
