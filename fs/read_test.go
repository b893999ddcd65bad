package fs

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packdir/packdir/backend"
)

// requestLog counts the FUSE requests of a mount by opcode, from
// go-fuse's debug log.
type requestLog struct {
	mu     sync.Mutex
	counts map[string]int
}

var requestLine = regexp.MustCompile(`rx \d+: ([A-Z_]+) `)

func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range requestLine.FindAllSubmatch(p, -1) {
		l.counts[string(m[1])]++
	}
	return len(p), nil
}

// take returns the counts so far and starts counting anew.
func (l *requestLog) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = map[string]int{}
	return c
}

// undisturbed returns the requests that measure sent, measuring again if
// the caches of the whole machine were dropped meanwhile (another test of
// the run, the benchmark's cold phases, writes /proc/sys/vm/drop_caches):
// the kernel then asks for names, attributes and pages that a test which
// counts requests expects it to hold. measure must be repeatable. The
// benchmark's smoke run drops them for under a minute; after five minutes
// of drops, the test fails.
func (l *requestLog) undisturbed(t testing.TB, measure func()) map[string]int {
	t.Helper()
	const patience = 5 * time.Minute
	for deadline := time.Now().Add(patience); time.Now().Before(deadline); {
		drops := cacheDrops(t)
		l.take()
		measure()
		got := l.take()
		if cacheDrops(t) == drops {
			return got
		}
		t.Log("the machine's caches were dropped meanwhile; measuring again")
	}
	t.Fatalf("the machine's caches were dropped during every measurement for %v", patience)
	return nil
}

// cacheDrops counts the writes to /proc/sys/vm/drop_caches since boot.
func cacheDrops(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		var v uint64
		if k, _, ok := strings.Cut(line, " "); ok && (k == "drop_pagecache" || k == "drop_slab") {
			if _, err := fmt.Sscan(line[len(k)+1:], &v); err != nil {
				t.Fatalf("/proc/vmstat: %q: %v", line, err)
			}
			n += v
		}
	}
	return n
}

// TestReadsWithoutRequests: files are opened without OPEN, closed without
// FLUSH or RELEASE, and a message read once is read again from the
// kernel's cache, with no request at all: what makes a warm tar of a
// Maildir as fast as on ext4. A cold read is its READs alone.
func TestReadsWithoutRequests(t *testing.T) {
	t.Parallel()
	reqs := &requestLog{counts: map[string]int{}}
	mnt, _ := mountT(t, Options{Debug: true, DebugLog: log.New(reqs, "", 0)})
	var paths []string
	var bodies [][]byte
	for i := range 20 {
		body := message(fmt.Sprintf("nr%d", i), 3000+i*5000)
		paths = append(paths, deliver(t, mnt, "cur", fmt.Sprintf("1700000000.M%dP1.nr:2,S", i), body))
		bodies = append(bodies, body)
	}
	reqs.take()

	for i, p := range paths {
		checkContent(t, p, bodies[i])
	}
	cold := reqs.take()
	// The first OPEN of the mount, answered ENOSYS, may come here.
	if cold["OPEN"] > 1 || cold["RELEASE"] != 0 || cold["FLUSH"] > 1 {
		t.Errorf("first reads sent %v: want at most one OPEN and FLUSH, and no RELEASE", cold)
	}
	if cold["READ"] < len(paths) {
		t.Errorf("first reads of %d messages sent %d READs", len(paths), cold["READ"])
	}

	// A READ makes the kernel forget the file's atime, so the next fstat
	// (ReadFile's) asks for it once.
	readAll := func() {
		for i, p := range paths {
			checkContent(t, p, bodies[i])
		}
	}
	again := reqs.undisturbed(t, readAll)
	if again["GETATTR"] > len(paths) || len(again) > 1 {
		t.Errorf("reading cached messages again sent %v, want at most a GETATTR each", again)
	}
	warm := reqs.undisturbed(t, func() {
		readAll()
		readAll()
		readAll()
	})
	if len(warm) != 0 {
		t.Errorf("reading cached messages again sent %v, want no request", warm)
	}
}

// TestLargeMessageRead: a message the kernel reads in many READs, at once
// and out of order, comes back whole, after a remount too.
func TestLargeMessageRead(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	body := message("large", 5<<20+123)
	p := deliver(t, mnt, "cur", "1700000000.M1P1.large:2,S", body)
	remount(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			buf := make([]byte, 100<<10)
			for off := int64(len(body)) - int64(len(buf)*(w+1)); off > 0; off -= int64(len(buf) * 4) {
				k, err := f.ReadAt(buf, off)
				if err != nil || !bytes.Equal(buf[:k], body[off:off+int64(k)]) {
					t.Errorf("reader %d at %d: %d bytes, %v, not the message's", w, off, k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkContent(t, p, body)
}

// TestWrittenInPlace: a message written straight into cur/ (cp, tar,
// rsync) is committed once it has gone unchanged for commitIdle, and one
// written just before unmount is committed by the unmount.
func TestWrittenInPlace(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	body := message("inplace", 20000)
	p := filepath.Join(mnt, "cur", "1700000000.M1P1.inplace:2,S")
	writeFile(t, p, body)
	ino := lstat(t, p).Ino
	waitSealed(t, s, ino)
	checkContent(t, p, body)

	q := filepath.Join(mnt, "cur", "1700000000.M2P1.inplace:2,S")
	writeFile(t, q, body[:5000])
	qino := lstat(t, q).Ino
	s = remount(t)
	wantSealed(t, s, qino, "written before unmount")
	checkContent(t, q, body[:5000])
}

// TestMsgCache: one load for concurrent readers of a message, nothing
// kept of a failed load or of a load that found other bytes, and no more
// than the bound kept.
func TestMsgCache(t *testing.T) {
	mnt, s := mountT(t)
	var sums [][32]byte
	var inos []uint64
	for i := range 4 {
		p := deliver(t, mnt, "cur", fmt.Sprintf("1700000000.M%dP1.mc:2,S", i), message(fmt.Sprintf("mc%d", i), 10000)[:10000])
		a, err := s.Getattr(lstat(t, p).Ino)
		if err != nil {
			t.Fatal(err)
		}
		sums, inos = append(sums, a.Payload), append(inos, a.Ino)
	}
	c := newMsgCache(25000)
	var loads atomic.Int32
	load := func(i int) func() (*backend.Message, error) {
		return func() (*backend.Message, error) {
			loads.Add(1)
			return s.OpenMessage(inos[i])
		}
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := c.get(sums[0], load(0)); err != nil || len(b) != 10000 {
				t.Errorf("get: %d bytes, %v", len(b), err)
			}
		}()
	}
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("8 concurrent readers loaded the message %d times, want 1", n)
	}

	failed := errors.New("damaged")
	if _, err := c.get(sums[1], func() (*backend.Message, error) { return nil, failed }); err != failed {
		t.Errorf("failed load: got %v", err)
	}
	// A load that finds another message (the file changed since its stat)
	// serves those bytes but does not cache them under the asked sum.
	if b, err := c.get(sums[1], load(2)); err != nil || len(b) != 10000 {
		t.Errorf("get with a changed file: %d bytes, %v", len(b), err)
	}
	loads.Store(0)
	if _, err := c.get(sums[1], load(1)); err != nil || loads.Load() != 1 {
		t.Errorf("after a failed and a mismatched load: %d loads, %v; want 1", loads.Load(), err)
	}

	for i := range 4 {
		if _, err := c.get(sums[i], load(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size > c.max || c.lru.Len() != 2 || c.size != 20000 {
		t.Errorf("cache of %d bytes holds %d messages, %d bytes; want 2 and 20000", c.max, c.lru.Len(), c.size)
	}
}

// TestKernelCachesNamesLong: names, attributes and absent names stay in
// the kernel's caches long after a scan (an hour; it was 10 s), so a flag
// pass or a second scan a little later asks the daemon nothing.
func TestKernelCachesNamesLong(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 11 s")
	}
	t.Parallel()
	reqs := &requestLog{counts: map[string]int{}}
	mnt, _ := mountT(t, Options{Debug: true, DebugLog: log.New(reqs, "", 0)})
	var paths []string
	for i := range 5 {
		paths = append(paths, deliver(t, mnt, "cur", fmt.Sprintf("1700000000.M%dP1.long:2,S", i), message(fmt.Sprint(i), 2000)))
	}
	missing := filepath.Join(mnt, "cur", "1700000000.M9P1.long:2,S")
	statAll := func() {
		if _, err := os.ReadDir(filepath.Join(mnt, "cur")); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			lstat(t, p)
		}
		if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("lstat %s: %v, want ENOENT", missing, err)
		}
	}
	got := reqs.undisturbed(t, func() {
		statAll()
		reqs.take()
		time.Sleep(11 * time.Second)
		statAll()
	})
	// Opening the directory is a request; what it lists must need none.
	for _, op := range []string{"OPENDIR", "READDIRPLUS", "READDIR", "RELEASEDIR"} {
		delete(got, op)
	}
	if len(got) != 0 {
		t.Errorf("stat of cached names 11 s later sent %v, want nothing but the directory's reading", got)
	}
}

// TestReadRepliesNotSpliced: reads answer with bytes, so go-fuse must not
// try a splice for each (a pipe taken, grown, written and drained per READ).
func TestReadRepliesNotSpliced(t *testing.T) {
	t.Parallel()
	_, s := mountT(t)
	if mo := (&FS{}).mountOptions(s, Options{}); !mo.DisableSplice {
		t.Error("mount options leave splice on")
	}
}
