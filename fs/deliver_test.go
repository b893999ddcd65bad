package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

func message(id string, size int) []byte {
	head := fmt.Sprintf("From: alice@example.org\nTo: bob@example.org\nSubject: %s\nMessage-ID: <%s@example.org>\n\n", id, id)
	var b bytes.Buffer
	b.WriteString(head)
	for b.Len() < size {
		fmt.Fprintf(&b, "line %d of %s\n", b.Len(), id)
	}
	return b.Bytes()
}

// wantSealed fails t unless ino is a sealed message in the store.
func wantSealed(t testing.TB, s *backend.Store, ino uint64, what string) {
	t.Helper()
	a, err := s.Getattr(ino)
	if err != nil {
		t.Fatalf("%s: store getattr of inode %d: %v", what, ino, err)
	}
	if !a.Sealed {
		t.Errorf("%s: inode %d is not a sealed message", what, ino)
	}
}

// TestDeliver: delivery by rename(tmp/x, new/x) and by link+unlink leaves
// the whole message in new/, the same inode, nothing in tmp/, and the
// message sealed when the call returns. Contract: "rename(tmp/x, new/x) or
// link(tmp/x, new/x)+unlink(tmp/x)".
func TestDeliver(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	for _, c := range []struct {
		how     string
		deliver func(tmp, dst string) error
	}{
		{"rename", os.Rename},
		{"link", func(tmp, dst string) error {
			if err := os.Link(tmp, dst); err != nil {
				return err
			}
			return os.Remove(tmp)
		}},
	} {
		t.Run(c.how, func(t *testing.T) {
			name := "1700000000.M1P1." + c.how
			body := message(name, 5000)
			tmp := filepath.Join(mnt, "tmp", name)
			dst := filepath.Join(mnt, "new", name)
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			must(t, err)
			_, err = f.Write(body)
			must(t, err)
			must(t, f.Sync())
			must(t, f.Close())
			before := lstat(t, tmp)

			must(t, c.deliver(tmp, dst))

			after := lstat(t, dst)
			if after.Ino != before.Ino {
				t.Errorf("st_ino changed from %d to %d", before.Ino, after.Ino)
			}
			if after.Nlink != 1 || after.Size != int64(len(body)) {
				t.Errorf("nlink %d size %d, want 1 and %d", after.Nlink, after.Size, len(body))
			}
			wantSealed(t, s, after.Ino, "delivered")
			checkContent(t, dst, body)
			if n := names(t, filepath.Join(mnt, "tmp")); len(n) != 0 {
				t.Errorf("tmp/ holds %q after delivery", n)
			}
			_, err = os.Lstat(tmp)
			wantErrno(t, "stat tmp name", err, syscall.ENOENT)
		})
	}
}

// TestFlagRenames: new/x -> cur/x:2,S -> cur/x:2,FS -> .Trash/cur/x:2,FS
// changes only names: same inode, same bytes, nothing new stored.
// Contract: "rename(new/x, cur/x:2,S)" and "rename across folders".
func TestFlagRenames(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	body := message("flags", 64<<10)
	path := deliver(t, mnt, "new", "1700000000.M5P5.host", body)
	ino := lstat(t, path).Ino
	st0, err := s.Stats()
	must(t, err)

	steps := []string{
		filepath.Join(mnt, "cur", "1700000000.M5P5.host:2,S"),
		filepath.Join(mnt, "cur", "1700000000.M5P5.host:2,FS"),
		filepath.Join(mnt, ".Trash", "cur", "1700000000.M5P5.host:2,FS"),
		filepath.Join(mnt, ".Trash", "cur", "1700000000.M5P5.host:2,FST"),
		filepath.Join(mnt, "cur", "1700000000.M5P5.host:2,FS"),
	}
	for _, next := range steps {
		must(t, os.Rename(path, next))
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("old name %s still there: %v", path, err)
		}
		path = next
		st := lstat(t, path)
		if st.Ino != ino || st.Nlink != 1 || st.Size != int64(len(body)) {
			t.Errorf("%s: ino %d nlink %d size %d, want %d, 1, %d", path, st.Ino, st.Nlink, st.Size, ino, len(body))
		}
		checkContent(t, path, body)
	}
	wantSealed(t, s, ino, "after flag renames")
	st1, err := s.Stats()
	must(t, err)
	if st1.Payloads != st0.Payloads || st1.ContainerBytes-st0.ContainerBytes > 4096 {
		t.Errorf("renames stored data: payloads %d -> %d, container bytes %d -> %d",
			st0.Payloads, st1.Payloads, st0.ContainerBytes, st1.ContainerBytes)
	}
	for _, dir := range []string{"new", ".Trash/cur"} {
		if n := names(t, filepath.Join(mnt, dir)); len(n) != 0 {
			t.Errorf("%s holds %q", dir, n)
		}
	}
}

// TestHardLinks: link between message names (Dovecot COPY, cp -l) gives
// one inode with two names. Contract: "link between message names".
func TestHardLinks(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	body := message("linked", 3000)
	a := deliver(t, mnt, "cur", "1700000000.M6P6.host:2,S", body)
	b := filepath.Join(mnt, "cur", "1700000001.M7P7.host:2,S")
	c := filepath.Join(mnt, ".Trash", "cur", "1700000002.M8P8.host:2,")
	st0, err := s.Stats()
	must(t, err)
	must(t, os.Link(a, b))
	must(t, os.Link(b, c))
	ino := lstat(t, a).Ino
	for _, p := range []string{a, b, c} {
		st := lstat(t, p)
		if st.Ino != ino || st.Nlink != 3 {
			t.Errorf("%s: ino %d nlink %d, want %d and 3", p, st.Ino, st.Nlink, ino)
		}
		checkContent(t, p, body)
	}
	st1, err := s.Stats()
	must(t, err)
	if st1.Payloads != st0.Payloads || st1.Messages != st0.Messages {
		t.Errorf("links stored data: payloads %d -> %d, messages %d -> %d", st0.Payloads, st1.Payloads, st0.Messages, st1.Messages)
	}

	must(t, os.Remove(a))
	for _, p := range []string{b, c} {
		if st := lstat(t, p); st.Nlink != 2 {
			t.Errorf("%s: nlink %d after one unlink, want 2", p, st.Nlink)
		}
	}
	must(t, os.Remove(c))
	if st := lstat(t, b); st.Nlink != 1 || st.Ino != ino {
		t.Errorf("%s: nlink %d ino %d after two unlinks, want 1 and %d", b, st.Nlink, st.Ino, ino)
	}
	checkContent(t, b, body)
	// Linking onto itself and renaming one name of an inode onto another
	// behave as on a local filesystem.
	wantErrno(t, "link onto own name", os.Link(b, b), syscall.EEXIST)
	must(t, os.Link(b, a))
	must(t, os.Rename(a, b)) // same inode: rename does nothing
	if st := lstat(t, b); st.Nlink != 2 {
		t.Errorf("nlink %d after rename between two names of one inode, want 2", st.Nlink)
	}
}

// TestCopyOnWrite: x and y are two names of one message; z is another
// message with the same bytes, sharing the stored payload. Changing x
// changes y (same inode) and not z. Contract: "open a message for writing
// / truncate it".
func TestCopyOnWrite(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	old := message("cow", 10000)
	cases := []struct {
		name   string
		change func(t *testing.T, path string)
		want   []byte
		sealed bool // committed again once unchanged for commitIdle
	}{
		{"O_TRUNC", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			must(t, err)
			_, err = f.WriteString("replaced\n")
			must(t, err)
			must(t, f.Close())
		}, []byte("replaced\n"), true},
		{"O_RDWR", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("Subject: edited"), 48)
			must(t, err)
			must(t, f.Close())
		}, append(append(append([]byte(nil), old[:48]...), "Subject: edited"...), old[48+15:]...), true},
		{"truncate", func(t *testing.T, path string) {
			must(t, os.Truncate(path, 100))
		}, old[:100], false},
		{"ftruncate-grow", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			must(t, err)
			must(t, f.Truncate(int64(len(old)+10)))
			must(t, f.Close())
		}, append(append([]byte(nil), old...), make([]byte, 10)...), true},
	}
	type trio struct{ x, y, z string }
	var trios []trio
	for i, c := range cases {
		x := deliver(t, mnt, "cur", fmt.Sprintf("1700000000.M%dP1.x:2,S", i), old)
		y := filepath.Join(mnt, "cur", fmt.Sprintf("1700000000.M%dP1.y:2,S", i))
		must(t, os.Link(x, y))
		z := deliver(t, mnt, "cur", fmt.Sprintf("1700000000.M%dP1.z:2,S", i), old)
		trios = append(trios, trio{x, y, z})
		// Read all three first, so that the kernel caches their pages.
		checkContent(t, y, old)
		checkContent(t, z, old)
		ino, zino := lstat(t, x).Ino, lstat(t, z).Ino

		t.Run(c.name, func(t *testing.T) {
			c.change(t, x)
			for _, p := range []string{x, y} {
				checkContent(t, p, c.want)
				if st := lstat(t, p); st.Ino != ino || st.Nlink != 2 || st.Size != int64(len(c.want)) {
					t.Errorf("%s: ino %d nlink %d size %d, want %d, 2, %d", p, st.Ino, st.Nlink, st.Size, ino, len(c.want))
				}
			}
			checkContent(t, z, old)
			if st := lstat(t, z); st.Ino != zino || st.Size != int64(len(old)) {
				t.Errorf("z: ino %d size %d, want %d and %d", st.Ino, st.Size, zino, len(old))
			}
			wantSealed(t, s, zino, "z")
			if c.sealed {
				waitSealed(t, s, ino)
			}
		})
	}

	// All of it survives a remount.
	remount(t)
	for i, c := range cases {
		checkContent(t, trios[i].x, c.want)
		checkContent(t, trios[i].y, c.want)
		checkContent(t, trios[i].z, old)
	}
}

// TestIdleCommitAfterForget: a message written in place is committed
// once idle even if the kernel forgets its inode in between, as it does
// under memory pressure, on drop_caches, or when the daemon prunes past
// Options.MaxInodes; and a write that comes after, through the node the
// next lookup makes, is kept. Contract: "open a message for writing /
// truncate it".
func TestIdleCommitAfterForget(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	fsys := mountOf(t).fsys
	name := "1700000000.M1P1.host:2,S"
	p := deliver(t, mnt, "cur", name, message("forget", 5000))
	ino := lstat(t, p).Ino
	forget := func() {
		t.Helper()
		c := fsys.root.GetChild("cur").GetChild(name).Operations().(*node)
		fsys.evict.prune([]*node{c})
		for deadline := time.Now().Add(10 * time.Second); named(c); {
			if time.Now().After(deadline) {
				t.Fatalf("the kernel did not forget inode %d", ino)
			}
			time.Sleep(time.Millisecond)
		}
	}

	want := []byte("Subject: first\n\nrewritten in place\n")
	must(t, os.WriteFile(p, want, 0o600))
	forget()
	waitSealed(t, s, ino)
	checkContent(t, p, want)

	// Forgotten with its idle commit still to come, changed again
	// through a new node: both commits are of the inode, and the
	// last write is what stays.
	must(t, os.WriteFile(p, []byte("Subject: second\n\n"), 0o600))
	forget()
	want = []byte("Subject: third\n\nthe last write\n")
	must(t, os.WriteFile(p, want, 0o600))
	waitSealed(t, s, ino)
	checkContent(t, p, want)
	remount(t)
	checkContent(t, p, want)
}

// waitAllSealed waits until the store holds the given number of sealed
// messages: every file delivered into new/ or cur/ has been committed.
func waitAllSealed(t testing.TB, s *backend.Store, messages int) {
	t.Helper()
	var st backend.Stats
	for i := 0; i < 500; i++ {
		var err error
		if st, err = s.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.Messages == messages {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%d sealed messages after delivery, want %d (%d files spooled)", st.Messages, messages, st.SpooledFiles)
}

// waitSealed waits for ino to be committed: a message written in place
// is committed once it has gone unchanged for commitIdle.
func waitSealed(t testing.TB, s *backend.Store, ino uint64) {
	t.Helper()
	deadline := time.Now().Add(commitIdle + 5*time.Second)
	for time.Now().Before(deadline) {
		if a, err := s.Getattr(ino); err == nil && a.Sealed {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("inode %d was not committed %v after it was written in place", ino, commitIdle)
}

// TestManyEntries: 20,000 messages in one cur/ list completely, with
// exact sizes, before and after a remount. Contract: "readdir + stat of
// cur/ with 1M entries".
func TestManyEntries(t *testing.T) {
	t.Parallel()
	const total, workers = 20000, 16
	if testing.Short() {
		t.Skip("20,000 deliveries")
	}
	// The store is on tmpfs when there is one: this test is about
	// listing a large directory, and creating 20,000 spool files on a
	// slow disk would take most of the test's time.
	mnt, s := mountStore(t, memTempDir(t))
	size := func(i int) int { return 100 + i%997 }
	name := func(i int) string { return fmt.Sprintf("%d.M%dP1.host:2,S", 1700000000+i, i) }
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += workers {
				tmp := filepath.Join(mnt, "tmp", fmt.Sprint(i))
				if err := os.WriteFile(tmp, bytes.Repeat([]byte{'m'}, size(i)), 0o600); err != nil {
					t.Error(err)
					return
				}
				if err := os.Rename(tmp, filepath.Join(mnt, "cur", name(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	t.Logf("delivered %d messages in %v", total, time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	check := func(when string) {
		cur := filepath.Join(mnt, "cur")
		es, err := os.ReadDir(cur)
		must(t, err)
		if len(es) != total {
			t.Fatalf("%s: readdir of cur/ gives %d names, want %d", when, len(es), total)
		}
		want := map[string]int{}
		for i := 0; i < total; i++ {
			want[name(i)] = size(i)
		}
		for _, e := range es {
			sz, ok := want[e.Name()]
			if !ok {
				t.Fatalf("%s: unexpected or repeated name %q", when, e.Name())
			}
			delete(want, e.Name())
			if st := lstat(t, filepath.Join(cur, e.Name())); st.Size != int64(sz) || st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Fatalf("%s: %s has size %d mode %o, want %d, regular", when, e.Name(), st.Size, st.Mode, sz)
			}
		}
	}
	waitAllSealed(t, s, total)
	check("after delivery")
	if n := names(t, filepath.Join(mnt, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ holds %d names", len(n))
	}
	remount(t)
	check("after remount")
}

// TestParallelDelivery: 8 MDAs delivering at once, each with fsync before
// the rename, lose nothing and get distinct inode numbers (Postfix names
// messages after them). Contract: "rename(tmp/x, new/x)", "st_ino".
func TestParallelDelivery(t *testing.T) {
	t.Parallel()
	const workers, each = 8, 200
	mnt, s := mountT(t)
	body := func(w, i int) []byte { return message(fmt.Sprintf("w%d-m%d", w, i), 200+(w*each+i)%3000) }
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := deliverSynced(mnt, fmt.Sprintf("1700000000.M%dP%d.host", i, w), body(w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitAllSealed(t, s, workers*each)
	inos := map[uint64]string{}
	for w := 0; w < workers; w++ {
		for i := 0; i < each; i++ {
			p := filepath.Join(mnt, "new", fmt.Sprintf("1700000000.M%dP%d.host", i, w))
			checkContent(t, p, body(w, i))
			ino := lstat(t, p).Ino
			if other, dup := inos[ino]; dup {
				t.Errorf("%s and %s share inode %d", p, other, ino)
			}
			inos[ino] = p
		}
	}
	if n := names(t, filepath.Join(mnt, "new")); len(n) != workers*each {
		t.Errorf("new/ holds %d names, want %d", len(n), workers*each)
	}
	if n := names(t, filepath.Join(mnt, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ holds %q", n)
	}
}

// deliverSynced delivers as an MDA does: create in tmp/, write, fsync,
// close, rename into new/.
func deliverSynced(mnt, name string, data []byte) error {
	tmp := filepath.Join(mnt, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(mnt, "new", name))
}
