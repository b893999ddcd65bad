package fs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is what a backup tool sees of one name in the tree.
type entry struct {
	Mode, UID, GID uint32
	Nlink          uint64
	Size           int64
	Mtime          int64
	Ino            uint64
	Content        string // sha256 of a file, target of a symlink
}

// snapshot walks the tree under mnt as rsync or tar would.
func snapshot(t testing.TB, mnt string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		e := entry{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Nlink: uint64(st.Nlink), Size: st.Size, Mtime: st.Mtim.Nano(), Ino: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if int64(len(b)) != st.Size {
				t.Errorf("%s: read %d bytes, stat says %d", rel, len(b), st.Size)
			}
			sum := sha256.Sum256(b)
			e.Content = hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			e.Content, err = os.Readlink(path)
			if err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	must(t, err)
	return out
}

// inodeGroups lists the names of each inode with more than one name.
func inodeGroups(snap map[string]entry) []string {
	byIno := map[uint64][]string{}
	for p, e := range snap {
		if e.Mode&unix.S_IFMT != unix.S_IFDIR {
			byIno[e.Ino] = append(byIno[e.Ino], p)
		}
	}
	var out []string
	for _, ps := range byIno {
		if len(ps) > 1 {
			sort.Strings(ps)
			out = append(out, strings.Join(ps, " = "))
		}
	}
	sort.Strings(out)
	return out
}

// TestRemountPersistence: after a day's worth of mail activity, unmount
// and mount again show the same tree: names, sizes, modes, owners, times,
// inode numbers and link groups, bytes. Contract: "st_ino ... stable
// across remounts", and durability of every namespace change.
func TestRemountPersistence(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	p := func(parts ...string) string { return filepath.Join(append([]string{mnt}, parts...)...) }

	// Deliveries, by rename and by link, some fsynced.
	for i := 0; i < 20; i++ {
		deliver(t, mnt, "new", fmt.Sprintf("17000000%02d.M%dP1.host", i, i), message(fmt.Sprint("m", i), 500+i*300))
	}
	must(t, deliverSynced(mnt, "1700000100.M100P1.host", message("synced", 9000)))
	writeFile(t, p("tmp", "1700000101.M101P1.host"), message("linked", 700))
	must(t, os.Link(p("tmp", "1700000101.M101P1.host"), p("new", "1700000101.M101P1.host")))
	must(t, os.Remove(p("tmp", "1700000101.M101P1.host")))
	// The same bytes twice: de-duplicated, but two inodes.
	deliver(t, mnt, "new", "1700000102.M102P1.host", message("m3", 1400))

	// An MUA reads new mail and sets flags.
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("17000000%02d.M%dP1.host", i, i)
		flags := []string{"S", "RS", "FS", "S", "ST"}[i%5]
		must(t, os.Rename(p("new", name), p("cur", name+":2,"+flags)))
	}
	must(t, os.Rename(p("cur", "1700000002.M2P1.host:2,FS"), p("cur", "1700000002.M2P1.host:2,FRS")))
	// Moves to Trash, deletes, and an expunge of a trashed message.
	must(t, os.Rename(p("cur", "1700000004.M4P1.host:2,ST"), p(".Trash", "cur", "1700000004.M4P1.host:2,ST")))
	must(t, os.Rename(p("cur", "1700000009.M9P1.host:2,ST"), p(".Trash", "cur", "1700000009.M9P1.host:2,ST")))
	must(t, os.Remove(p(".Trash", "cur", "1700000009.M9P1.host:2,ST")))
	must(t, os.Remove(p("cur", "1700000005.M5P1.host:2,S")))
	// Copies by hard link (Dovecot COPY), one of them then edited.
	mkMaildir(t, p(".Lists.golang"))
	must(t, os.Link(p("cur", "1700000006.M6P1.host:2,RS"), p(".Lists.golang", "cur", "1700000006.M6P1.host:2,RS")))
	must(t, os.Link(p("cur", "1700000007.M7P1.host:2,FS"), p(".Lists.golang", "new", "1700000007.M7P1.host")))
	must(t, os.Link(p("cur", "1700000007.M7P1.host:2,FS"), p(".Trash", "cur", "1700000007.M7P1.host:2,FS")))
	f, err := os.OpenFile(p("cur", "1700000006.M6P1.host:2,RS"), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("X-Edited: yes\n"), 0)
	must(t, err)
	must(t, f.Close())
	// Attributes.
	must(t, os.Chmod(p("cur", "1700000008.M8P1.host:2,S"), 0o640))
	must(t, unix.UtimesNano(p("cur", "1700000010.M10P1.host:2,S"), []unix.Timespec{{Sec: 1600000000, Nsec: 1}, {Sec: 1600000000, Nsec: 999999999}}))
	// Side files, Dovecot style.
	writeFile(t, p("dovecot-uidlist"), []byte("3 V1 N1\n"))
	writeFile(t, p("dovecot-uidlist.lock"), []byte("3 V1 N22\n"))
	must(t, os.Rename(p("dovecot-uidlist.lock"), p("dovecot-uidlist")))
	lf, err := os.OpenFile(p("dovecot.index.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	must(t, err)
	for i := 0; i < 3; i++ {
		_, err = fmt.Fprintf(lf, "log record %d\n", i)
		must(t, err)
	}
	must(t, lf.Close())
	writeFile(t, p("subscriptions"), []byte("Lists.golang\nTrash\n"))
	writeFile(t, p(".Lists.golang", "dovecot-uidlist"), []byte("3 V2 N1\n"))
	must(t, os.Symlink(".Lists.golang", p(".golang")))
	// A folder made and deleted, one renamed, a default folder deleted.
	mkMaildir(t, p(".Junk"))
	deliver(t, p(".Junk"), "new", "spam", []byte("spam"))
	must(t, os.Rename(p(".Junk"), p(".Spam")))
	mkMaildir(t, p(".Tmp"))
	for _, sub := range []string{"tmp", "new", "cur"} {
		must(t, unix.Rmdir(p(".Tmp", sub)))
	}
	must(t, os.Remove(p(".Tmp", "maildirfolder")))
	must(t, unix.Rmdir(p(".Tmp")))
	must(t, os.RemoveAll(p(".Outbox")))
	// A file left in tmp/ by an MDA that died.
	writeFile(t, p("tmp", "1700000200.M200P1.host"), []byte("partial"))

	before := snapshot(t, mnt)
	groupsBefore := inodeGroups(before)
	if len(groupsBefore) != 2 {
		t.Errorf("want 2 groups of hard links, got %q", groupsBefore)
	}
	remount(t)
	after := snapshot(t, mnt)
	for path, e := range before {
		if a, ok := after[path]; !ok {
			t.Errorf("%s: gone after remount", path)
		} else if a != e {
			t.Errorf("%s: changed across remount:\n before %+v\n  after %+v", path, e, a)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("%s: appeared after remount", path)
		}
	}
	if g := inodeGroups(after); !equalStrings(g, groupsBefore) {
		t.Errorf("hard link groups changed: %q, were %q", g, groupsBefore)
	}
	if len(before) < 50 {
		t.Errorf("snapshot has only %d entries", len(before))
	}
}
