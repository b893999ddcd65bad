package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/test/harness"
)

// The probe of issue 14, item 11: a 5 MB message, two users with uids of
// their own, the mount serving both (no --user), and the free space of
// the file system under the store, as statfs on the mount shows it to
// any user.
const (
	dedupMessageSize = 5_000_000
	dedupAliceUID    = 2101
	dedupBobUID      = 2102
)

// dedupProbe is a store alone on its own tmpfs, so that its free space
// changes only with what packdir writes, mounted for users alice and bob.
type dedupProbe struct {
	store, mnt string
	m          *harness.Mount
}

// newDedupProbe inits a store with init's extra args on a private tmpfs,
// adds alice and bob, and mounts the store root for both.
func newDedupProbe(t *testing.T, initArgs ...string) dedupProbe {
	t.Helper()
	harness.RequireRoot(t)
	harness.RequireFuse(t)
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=256m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs for the store: %v", err)
	}
	// Registered before the FUSE mount, so it runs after the mount stopped.
	t.Cleanup(func() {
		if err := unix.Unmount(disk, 0); err != nil {
			t.Errorf("unmount the store's tmpfs: %v", err)
		}
	})
	p := dedupProbe{store: filepath.Join(disk, "store"), mnt: mailUserDir(t)}
	harness.Run(t, "init", append(initArgs, p.store)...)
	for name, uid := range map[string]int{"alice": dedupAliceUID, "bob": dedupBobUID} {
		id := strconv.Itoa(uid)
		harness.Run(t, "user", "add", "--uid", id, "--gid", id, name, p.store)
	}
	p.m = harness.Start(t, p.store, p.mnt)
	return p
}

// dedupCost is what one delivery cost: free space of the store's file
// system (statfs on the mount) and bytes appended to the containers.
type dedupCost struct {
	free, containers int64
}

func (c dedupCost) String() string {
	return fmt.Sprintf("free space -%d KiB, containers +%d bytes", c.free>>10, c.containers)
}

// deliver delivers data to user as a Maildir MDA running as the user's
// uid does (write tmp/NAME, rename it into new/), and returns its cost.
// name is as long for every delivery, so that the journal records of two
// deliveries are the same size.
func (p dedupProbe) deliver(t *testing.T, user string, uid int, name string, data []byte) dedupCost {
	t.Helper()
	free0, cont0 := p.space(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp, dst := filepath.Join(p.mnt, user, "tmp", name), filepath.Join(p.mnt, user, "new", name)
	cmd := exec.CommandContext(ctx, "sh", "-c", `cat > "$1" && mv "$1" "$2"`, "sh", tmp, dst)
	cmd.Stdin = bytes.NewReader(data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deliver %s to %s as uid %d: %v\n%s", name, user, uid, err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	free1, cont1 := p.space(t, st.Ino)
	c := dedupCost{free: free0 - free1, containers: cont1 - cont0}
	t.Logf("measured: %s delivers %s: %v", user, name, c)
	return c
}

// space is the free bytes of the store's file system as statfs on the
// mount reports them, and the bytes of the container files, once the
// spool file of inode ino (0: none) is gone: removed, which the daemon's
// sync loop does once the delivery is durable, and closed, which the
// daemon does when the kernel releases the file, after the writer closed
// it. Until then its pages still count as used.
func (p dedupProbe) space(t *testing.T, ino uint64) (free, containers int64) {
	t.Helper()
	spool := filepath.Join(p.store, "spool", fmt.Sprintf("%016x", ino))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := os.Lstat(spool)
		gone := ino == 0 || errors.Is(err, fs.ErrNotExist)
		open := p.openDeletedSpool(t)
		if gone && open == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the delivery: spool file %s: %v; daemon holds %q", spool, err, open)
		}
	}
	free = p.settledFree(t)
	packs, err := filepath.Glob(filepath.Join(p.store, "containers", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pack := range packs {
		fi, err := os.Stat(pack)
		if err != nil {
			t.Fatal(err)
		}
		containers += fi.Size()
	}
	return free, containers
}

// settledFree is the free space of the store's file system once five
// readings 20 ms apart agree: the kernel may free the pages of a removed
// spool file a moment after the daemon closed it.
func (p dedupProbe) settledFree(t *testing.T) int64 {
	t.Helper()
	var last int64 = -1
	for same, deadline := 0, time.Now().Add(20*time.Second); same < 5; time.Sleep(20 * time.Millisecond) {
		var st unix.Statfs_t
		if err := unix.Statfs(p.mnt, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bfree) * st.Bsize
		if free == last {
			same++
		} else {
			same, last = 1, free
		}
		if time.Now().After(deadline) {
			t.Fatalf("the free space of the store's file system did not settle in 20 s")
		}
	}
	return last
}

// openDeletedSpool is a removed spool file the daemon still holds open,
// or "".
func (p dedupProbe) openDeletedSpool(t *testing.T) string {
	t.Helper()
	fds := fmt.Sprintf("/proc/%d/fd", p.m.PID)
	ents, err := os.ReadDir(fds)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fds, e.Name()))
		if err == nil && strings.Contains(target, "/spool/") && strings.HasSuffix(target, " (deleted)") {
			return target
		}
	}
	return ""
}

// dedupMessage is a random message of the probe's size: no other message
// shares its bytes, and it does not compress.
func dedupMessage(t *testing.T, subject string) []byte {
	t.Helper()
	head := []byte("Subject: " + subject + "\n\n")
	msg := make([]byte, dedupMessageSize)
	if _, err := rand.Read(msg[len(head):]); err != nil {
		t.Fatal(err)
	}
	copy(msg, head)
	return msg
}

// dedupScope is the de-duplication scope `packdir stats` reports, in text
// and JSON.
func dedupScope(t *testing.T, store string) (text, js string) {
	t.Helper()
	for _, line := range strings.Split(harness.Run(t, "stats", store), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "de-duplication" {
			text = f[1]
		}
	}
	var st struct {
		Scope string `json:"dedup_scope"`
	}
	if err := json.Unmarshal([]byte(harness.Run(t, "stats", "--json", store)), &st); err != nil {
		t.Fatal(err)
	}
	return text, st.Scope
}

// costsAlike reports whether two deliveries of messages of one size cost
// the same: the same container bytes, and free space within a few pages
// of the index (its growth depends on where bbolt's pages fall).
func costsAlike(a, b dedupCost) bool {
	d := a.free - b.free
	return a.containers == b.containers && d < 64<<10 && d > -64<<10
}

// TestFault11DedupScopeUser: in a store made with --dedup user, bob's copy
// of a 5 MB message alice holds costs what a new 5 MB message costs, in
// free space and container bytes: bob cannot tell that anyone holds it.
// Alice's second copy costs nothing, and a store made without --dedup
// scopes per user too.
func TestFault11DedupScopeUser(t *testing.T) {
	p := newDedupProbe(t, "--dedup", "user")
	msg, other := dedupMessage(t, "the probe"), dedupMessage(t, "new mail")
	first := p.deliver(t, "alice", dedupAliceUID, "1.alice", msg)
	if first.free < dedupMessageSize || first.containers < dedupMessageSize {
		t.Fatalf("alice's first delivery of %d bytes: %v; the probe measures nothing", dedupMessageSize, first)
	}
	copied := p.deliver(t, "bob", dedupBobUID, "2.bob..", msg)
	fresh := p.deliver(t, "bob", dedupBobUID, "3.bob..", other)
	if copied.free < dedupMessageSize || !costsAlike(copied, fresh) {
		t.Errorf("bob's copy of alice's message: %v; a new message of that size: %v: bob can tell that someone holds it", copied, fresh)
	}
	again := p.deliver(t, "alice", dedupAliceUID, "4.alice", msg)
	if again.containers >= 4096 || again.free >= 64<<10 {
		t.Errorf("alice's second copy of her own message: %v, want only journal records", again)
	}
	p.m.Stop(t)
	harness.Run(t, "fsck", p.store)
	if text, js := dedupScope(t, p.store); text != "user" || js != "user" {
		t.Errorf("stats reports de-duplication scope %q (JSON %q), want user", text, js)
	}
	plain := filepath.Join(t.TempDir(), "store")
	harness.Run(t, "init", plain)
	if text, js := dedupScope(t, plain); text != "user" || js != "user" {
		t.Errorf("a store made without --dedup has scope %q (JSON %q), want user", text, js)
	}
}

// TestFault11DedupScopeStore: with --dedup store, single-instance storage
// spans users as it always did: bob's copy of alice's message costs only
// journal records, and stats say so.
func TestFault11DedupScopeStore(t *testing.T) {
	p := newDedupProbe(t, "--dedup", "store")
	msg, other := dedupMessage(t, "the probe"), dedupMessage(t, "new mail")
	p.deliver(t, "alice", dedupAliceUID, "1.alice", msg)
	copied := p.deliver(t, "bob", dedupBobUID, "2.bob..", msg)
	fresh := p.deliver(t, "bob", dedupBobUID, "3.bob..", other)
	if copied.containers >= 4096 || copied.free >= 64<<10 || fresh.containers < dedupMessageSize || fresh.free < dedupMessageSize {
		t.Errorf("bob's copy of alice's message: %v, want only journal records; a new message: %v", copied, fresh)
	}
	p.m.Stop(t)
	harness.Run(t, "fsck", p.store)
	if text, js := dedupScope(t, p.store); text != "store" || js != "store" {
		t.Errorf("stats reports de-duplication scope %q (JSON %q), want store", text, js)
	}
}
