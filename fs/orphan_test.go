package fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

// clear empties the cache, as if every message in it had been pushed out.
func (c *msgCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
}

// TestUnlinkedWhileOpen: a message unlinked, or renamed over, while a
// reader has it open stays readable to the end, with none of its pages
// cached and through a compaction of its container, as on a local
// filesystem; once it is closed, compaction reclaims it.
func TestUnlinkedWhileOpen(t *testing.T) {
	for _, how := range []string{"unlink", "rename-over"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := backend.Init(dir, backend.Config{ContainerSize: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			mnt, s := mountStore(t, dir)
			body := message("orphan", 600<<10)
			p := deliver(t, mnt, "cur", "1700000000.M1P1.orphan:2,S", body)
			// Fill the container, so that the message's is sealed and
			// can be compacted.
			for i := range 6 {
				deliver(t, mnt, "cur", fmt.Sprintf("1700000001.M%dP1.fill:2,S", i), message(fmt.Sprint("fill", i), 100<<10))
			}

			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 4096)
			if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, body[:4096]) {
				t.Fatalf("first 4 KB: %v, or not the message's", err)
			}
			switch how {
			case "unlink":
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			case "rename-over":
				other := deliver(t, mnt, "tmp", "1700000002.M1P1.other", []byte("Subject: other\n\nother\n"))
				if err := os.Rename(other, p); err != nil {
					t.Fatal(err)
				}
			}
			// Nothing cached: the rest must come from the container.
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				t.Fatal(err)
			}
			mountOf(t).fsys.messages.clear()
			if _, err := s.Compact(1); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(rest, body[4096:]) {
				t.Fatalf("read after %s: %d bytes, %v; want the rest of the message (%d bytes)", how, len(rest), err, len(body)-4096)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != int64(len(body)) {
				t.Errorf("fstat after %s: nlink %d size %d, %v; want 0 and %d", how, st.Nlink, st.Size, err, len(body))
			}
			f.Close()

			// Closed, the kernel forgets the inode and compaction may take
			// the container back.
			deadline := time.Now().Add(10 * time.Second)
			for {
				res, err := s.Compact(1)
				if err != nil {
					t.Fatal(err)
				}
				if res.Containers > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the message's container is still kept 10 s after the file was closed")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := os.Stat(filepath.Join(mnt, "cur")); err != nil {
				t.Fatal(err)
			}
		})
	}
}
