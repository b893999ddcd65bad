package backend

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// recordSpan is where one record of a container lies.
type recordSpan struct {
	off, end int64
	typ      record.Type
}

// spans lists the records of a container file.
func spans(t *testing.T, data []byte) []recordSpan {
	t.Helper()
	sc := record.NewScanner(bytes.NewReader(data[record.HeaderSize:]), record.HeaderSize, 1<<30)
	var out []recordSpan
	for sc.Next() {
		out = append(out, recordSpan{sc.Offset(), sc.End(), sc.Record().Type})
	}
	must(t, sc.Err())
	return out
}

// tailStore makes a closed store whose only container ends with a
// delivery ("last": payload and commit records) and a rename, after ten
// earlier messages. It returns the store, the container's path and bytes,
// and its records.
func tailStore(t *testing.T) (dir, path string, data []byte, recs []recordSpan) {
	t.Helper()
	dir = t.TempDir()
	must(t, Init(dir, Config{}))
	s, err := Open(dir, TestOptions())
	must(t, err)
	u, err := s.AddUser("carol", 1000, 1000)
	must(t, err)
	for i := 0; i < 10; i++ {
		deliver(t, s, u.Ino, fmt.Sprintf("early%d", i), []byte(fmt.Sprintf("Subject: %d\n\nearly message\n", i)))
	}
	deliver(t, s, u.Ino, "last", []byte("Subject: last\n\ntorn\n"))
	must(t, s.Rename(u.Ino, "last", u.Ino, "last:2,S", 0))
	must(t, s.Close())
	path = filepath.Join(dir, "containers", containerName(1))
	data, err = os.ReadFile(path)
	must(t, err)
	return dir, path, data, spans(t, data)
}

// reopenAfterPowerLoss writes data as the container, makes Open rebuild
// the index from it as after a machine crash, and returns the store and
// what recovery logged.
func reopenAfterPowerLoss(t *testing.T, dir, path string, data []byte) (*Store, string, error) {
	t.Helper()
	must(t, os.WriteFile(path, data, 0o600))
	must(t, writeState(dir, state{dirty: true, pid: 1, bootID: "an-earlier-boot"}))
	var logBuf bytes.Buffer
	s, err := Open(dir, Options{Logger: bufLogger(&logBuf)})
	return s, logBuf.String(), err
}

// checkEarlyKept fails unless the ten early messages are there, whole,
// and the store checks clean.
func checkEarlyKept(t *testing.T, s *Store, what string) {
	t.Helper()
	u, err := s.User("carol")
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for i := 0; i < 10; i++ {
		a, err := s.Lookup(u.Ino, fmt.Sprintf("early%d", i))
		if err != nil {
			t.Fatalf("%s: early message %d lost: %v", what, i, err)
		}
		want := fmt.Sprintf("Subject: %d\n\nearly message\n", i)
		if got := string(readMessage(t, s, a.Ino)); got != want {
			t.Fatalf("%s: early message %d reads %q", what, i, got)
		}
	}
	r, err := s.Check()
	must(t, err)
	if !r.OK() {
		t.Fatalf("%s: check: %v", what, r.Problems)
	}
}

// wantCutLog fails unless recovery logged cutting container 1 at off.
func wantCutLog(t *testing.T, log string, off int64, what string) {
	t.Helper()
	want := fmt.Sprintf(`msg="cutting torn tail of the journal" container=1 offset=%d `, off)
	if !strings.Contains(log, want) {
		t.Fatalf("%s: recovery log lacks %q:\n%s", what, want, log)
	}
}

// TestTornTailEveryByte cuts the container at every byte offset of its
// last three records (the last delivery's payload and commit, and a
// rename), as a power loss can: recovery keeps every whole record before
// the cut, logs where it cut, and the store checks clean.
func TestTornTailEveryByte(t *testing.T) {
	dir, path, data, recs := tailStore(t)
	first := recs[len(recs)-3]
	if first.typ != record.TypePayload {
		t.Fatalf("third record from the end is a %s, want the payload", first.typ)
	}
	for cut := first.off; cut < int64(len(data)); cut++ {
		what := fmt.Sprintf("cut at %d", cut)
		s, log, err := reopenAfterPowerLoss(t, dir, path, data[:cut])
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		checkEarlyKept(t, s, what)
		whole := lastWholeEnd(recs, cut)
		if whole == cut {
			if strings.Contains(log, "cutting torn tail") {
				t.Fatalf("%s: a cut at a record boundary is no torn tail, recovery logged:\n%s", what, log)
			}
		} else {
			wantCutLog(t, log, whole, what)
		}
		must(t, s.Close())
		if fi, _ := os.Stat(path); fi.Size() != whole {
			t.Fatalf("%s: container is %d bytes after recovery, want %d", what, fi.Size(), whole)
		}
	}
	must(t, os.WriteFile(path, data, 0o600))
	must(t, os.Remove(filepath.Join(dir, "index.db")))
}

func lastWholeEnd(recs []recordSpan, cut int64) int64 {
	end := int64(record.HeaderSize)
	for _, r := range recs {
		if r.end <= cut {
			end = r.end
		}
	}
	return end
}

// TestGarbledTail flips each byte of the last record in turn: recovery
// cuts exactly that record, logs it, and keeps everything before it.
func TestGarbledTail(t *testing.T) {
	dir, path, data, recs := tailStore(t)
	last := recs[len(recs)-1]
	for off := last.off; off < last.end; off++ {
		what := fmt.Sprintf("byte %d flipped", off)
		garbled := bytes.Clone(data)
		garbled[off] ^= 0x5a
		s, log, err := reopenAfterPowerLoss(t, dir, path, garbled)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		checkEarlyKept(t, s, what)
		wantCutLog(t, log, last.off, what)
		u, _ := s.User("carol")
		if _, err := s.Lookup(u.Ino, "last"); err != nil {
			t.Fatalf("%s: the delivery before the garbled rename is lost: %v", what, err)
		}
		must(t, s.Close())
	}
	must(t, os.WriteFile(path, data, 0o600))
	must(t, os.Remove(filepath.Join(dir, "index.db")))
}

// TestDamageBeforeTailIsNotCut flips a byte in an early payload of the
// active container, which a rebuild replays: that is corruption, not a
// torn tail, so recovery must refuse with its location rather than cut
// off every later record with it.
func TestDamageBeforeTailIsNotCut(t *testing.T) {
	dir, path, data, recs := tailStore(t)
	var victim recordSpan
	for _, r := range recs {
		if r.typ == record.TypePayload {
			victim = r
			break
		}
	}
	garbled := bytes.Clone(data)
	garbled[victim.end-9] ^= 0x01
	s, log, err := reopenAfterPowerLoss(t, dir, path, garbled)
	if err == nil {
		s.Close()
		t.Fatalf("opened a store whose journal is damaged before its end; log:\n%s", log)
	}
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || corrupt.Container != 1 || corrupt.Offset != victim.off {
		t.Fatalf("open: %v, want a *CorruptError at container 1 offset %d", err, victim.off)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, garbled) {
		t.Fatalf("recovery changed the damaged container (%d bytes, was %d)", len(got), len(garbled))
	}
	must(t, os.WriteFile(path, data, 0o600))
	must(t, os.Remove(filepath.Join(dir, "index.db")))
}

// TestCheckNamesDamagedMessage flips a byte in the body of one stored
// message: Check reports the container file, the record's offset and
// every path of the message; reading it gives a *CorruptError with that
// location; every other message still reads.
func TestCheckNamesDamagedMessage(t *testing.T) {
	s := TestStore(t, Config{})
	u, err := s.AddUser("dave", 1000, 1000)
	must(t, err)
	cur := mkdir(t, s, u.Ino, "cur")
	var victim uint64
	for i := 0; i < 5; i++ {
		ino := deliver(t, s, cur, fmt.Sprintf("m%d:2,S", i), []byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)))
		if i == 2 {
			victim = ino
		}
	}
	_, err = s.Link(victim, u.Ino, "copy-of-m2")
	must(t, err)
	must(t, s.Sync())
	loc := payloadLocOf(t, s, victim)
	path := s.files.path(loc.Container)
	flipByte(t, path, loc.Offset+recordHeaderSize+32+4+3) // inside the message, after the key and the owner's uid

	_, err = s.OpenMessage(victim)
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || corrupt.Container != loc.Container || corrupt.Offset != loc.Offset {
		t.Fatalf("reading the damaged message: %v, want a *CorruptError at container %d offset %d", err, loc.Container, loc.Offset)
	}
	for i := 0; i < 5; i++ {
		if i != 2 {
			readMessage(t, s, lookup(t, s, cur, fmt.Sprintf("m%d:2,S", i)))
		}
	}
	r, err := s.Check()
	must(t, err)
	all := strings.Join(r.Problems, "\n")
	for _, p := range []string{"/dave/cur/m2:2,S", "/dave/copy-of-m2"} {
		want := fmt.Sprintf("damaged message %s (inode %d): %s offset %d: ", p, victim, path, loc.Offset)
		if !strings.Contains(all, want) {
			t.Errorf("check problems lack %q:\n%s", want, all)
		}
	}
	// The check goes on past the damaged record: the records after it
	// are checked, and the journal's end is found.
	skip := fmt.Sprintf("container %d: %d bytes from offset %d skipped; checking on at offset %d",
		loc.Container, record.EncodedSize(32+int(loc.Length)), loc.Offset, loc.Offset+record.EncodedSize(32+int(loc.Length)))
	if !strings.Contains(all, skip) || strings.Contains(all, "journal ends at sequence") || len(r.Problems) != 5 {
		t.Errorf("check problems, want the damaged record, the skip (%q), the payload and its two names:\n%s", skip, all)
	}
	flipByte(t, path, loc.Offset+recordHeaderSize+32+4+3) // undo, for TestStore's final check
}

func payloadLocOf(t *testing.T, s *Store, ino uint64) payloadLoc {
	t.Helper()
	var loc payloadLoc
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		n, err := x.inode(ino)
		if err != nil {
			return err
		}
		loc, _, err = x.payload(n.Payload)
		return err
	})
	must(t, err)
	return loc
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0x20
	_, err = f.WriteAt(b, off)
	must(t, err)
}

// TestDamagedIndexRefused garbles each page of index.db in turn, and
// truncates it: Open either finds nothing it needs damaged or refuses with
// one line that names 'packdir fsck --rebuild'; it never panics or faults
// (bbolt does both on a damaged file, in a goroutine no caller can
// recover). After the rebuild every message is back.
func TestDamagedIndexRefused(t *testing.T) {
	dir, _, _, _ := tailStore(t)
	idx := filepath.Join(dir, "index.db")
	clean, err := os.ReadFile(idx)
	must(t, err)
	const page = 4096
	refused := 0
	for off := 2 * page; off < len(clean); off += page {
		for _, damage := range []func([]byte){
			func(b []byte) { copy(b[off:off+page], bytes.Repeat([]byte{0xa5, 0x3c, 0x99}, page)) },
			func(b []byte) { b[off+20] ^= 0xff },
		} {
			damaged := bytes.Clone(clean)
			damage(damaged)
			if tryDamagedIndex(t, dir, damaged, fmt.Sprintf("page %d", off/page)) {
				refused++
			}
		}
	}
	if refused == 0 {
		t.Fatalf("no damaged page was noticed")
	}
	refused = 0
	for cut := 100; cut < len(clean); cut += page {
		if tryDamagedIndex(t, dir, clean[:cut], fmt.Sprintf("cut at %d", cut)) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("no truncation of index.db was noticed")
	}
	if !tryDamagedIndex(t, dir, bytes.Repeat([]byte("garbage!"), 2000), "garbage") {
		t.Fatalf("an index.db of garbage was accepted")
	}
	must(t, os.Remove(idx)) // what 'packdir fsck --rebuild' does
	s, err := Open(dir, TestOptions())
	must(t, err)
	checkEarlyKept(t, s, "after the rebuild")
	must(t, s.Close())
}

// tryDamagedIndex opens the store with data as index.db and reports
// whether Open refused it, failing the test if it refused badly.
func tryDamagedIndex(t *testing.T, dir string, data []byte, what string) bool {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "index.db"), data, 0o600))
	s, err := Open(dir, TestOptions())
	if err == nil {
		s.Close()
		return false
	}
	msg := err.Error()
	if !strings.Contains(msg, "index.db is damaged") || !strings.Contains(msg, "run 'packdir fsck --rebuild "+dir+"'") || strings.Contains(msg, "\n") {
		t.Errorf("%s: open refused with %q, want one line naming packdir fsck --rebuild", what, msg)
	}
	return true
}
