package backend

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// heldOrphan makes a spooled file holding data, holds it and unlinks it.
func heldOrphan(t *testing.T, s *Store, data string) uint64 {
	t.Helper()
	u, err := s.AddUser("alice", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Create(u.Ino, "f", 0o600, 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.spoolPath(a.Ino), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Hold(a.Ino)
	if err := s.Unlink(u.Ino, "f"); err != nil {
		t.Fatal(err)
	}
	return a.Ino
}

// TestHeldFileOutlivesItsName: a held spooled file whose last name goes
// keeps its bytes and attributes (link count 0) for the holder, who can
// still write and truncate it, until released; then its spool file goes.
func TestHeldFileOutlivesItsName(t *testing.T) {
	for _, synced := range []bool{true, false} {
		s := TestStore(t, Config{})
		ino := heldOrphan(t, s, "hello")
		a, err := s.Getattr(ino)
		if err != nil || a.Nlink != 0 || a.Size != 5 || a.Mode != ModeRegular|0o600 {
			t.Fatalf("getattr of the unlinked held file: %+v, %v; want nlink 0, size 5, mode %o", a, err, ModeRegular|0o600)
		}
		f, err := s.OpenSpool(ino, os.O_WRONLY)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteAt([]byte(", world"), 5)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if a, err = s.Setattr(ino, SetAttr{Mask: SetSize | SetMode, Size: 8, Mode: 0o400}); err != nil || a.Size != 8 || a.Mode != ModeRegular|0o400 {
			t.Fatalf("setattr of the unlinked held file: %+v, %v", a, err)
		}
		if b, err := os.ReadFile(s.spoolPath(ino)); err != nil || string(b) != "hello, w" {
			t.Fatalf("spool file holds %q, %v", b, err)
		}
		if synced {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		s.Release(ino)
		if synced {
			// The unlink is durable: the spool file goes at once.
			if _, err := os.Stat(s.spoolPath(ino)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("spool file after release: %v, want gone", err)
			}
		}
		if _, err := s.Getattr(ino); !errors.Is(err, ErrNotFound) {
			t.Errorf("getattr after release: %v, want ErrNotFound", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.spoolPath(ino)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("spool file after release and close (synced %v): %v, want gone", synced, err)
		}
	}
}

// TestHeldOrphanAfterCrash: the spool file of a file unlinked while held
// is not left behind by a crash: the index does not hold its inode, so
// the next open removes it.
func TestHeldOrphanAfterCrash(t *testing.T) {
	s := TestStore(t, Config{})
	ino := heldOrphan(t, s, "hello")
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	// The store's files as a crash (kill -9) leaves them.
	crashed := filepath.Join(t.TempDir(), "store")
	if out, err := exec.Command("cp", "-a", s.dir, crashed).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	s.Release(ino)
	spool := filepath.Join(crashed, "spool", filepath.Base(s.spoolPath(ino)))
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("the crashed store has no spool file of the orphan: %v", err)
	}
	c, err := Open(crashed, TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spool); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file of the orphan after the crash and a reopen: %v, want gone", err)
	}
	CheckStore(t, crashed)
}

// TestHeldSealedFileWritable: a held sealed file whose last name goes is
// copied to a spool file at its first change, as a named one is.
func TestHeldSealedFileWritable(t *testing.T) {
	s := TestStore(t, Config{})
	u, err := s.AddUser("alice", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ino := deliver(t, s, u.Ino, "m", []byte("sealed bytes"))
	a, err := s.Getattr(ino)
	if err != nil {
		t.Fatal(err)
	}
	s.Hold(ino)
	s.Pin(a.Payload)
	defer s.Unpin(a.Payload)
	if err := s.Unlink(u.Ino, "m"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Getattr(ino); err != nil || !a.Sealed || a.Nlink != 0 {
		t.Fatalf("getattr of the unlinked held message: %+v, %v; want sealed, nlink 0", a, err)
	}
	if err := s.Spool(ino, false); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Setattr(ino, SetAttr{Mask: SetSize, Size: 6}); err != nil || a.Sealed || a.Size != 6 {
		t.Fatalf("truncate of the unlinked held message: %+v, %v", a, err)
	}
	if b, err := os.ReadFile(s.spoolPath(ino)); err != nil || string(b) != "sealed" {
		t.Fatalf("spool file holds %q, %v; want %q", b, err, "sealed")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Release(ino)
	if _, err := os.Stat(s.spoolPath(ino)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file after release: %v, want gone", err)
	}
}
