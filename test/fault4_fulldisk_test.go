package test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestFault4FullDisk (issue 14, item 4) fills a small ext4 file system
// through the mount until deliveries fail, and checks that packdir's own
// commands get the store out of it: deliveries get ENOSPC (never EIO), rm
// through the mount works, unmount exits 0 and leaves the state closed,
// new mail is refused while the space is short, stats, fsck, compact and
// mount work, compaction gives the deleted mail's space back, and every
// acknowledged message that was not deleted is intact byte for byte.
func TestFault4FullDisk(t *testing.T) {
	harness.RequireFuse(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root, for a loop device and an ext4 file system of its own")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (e2fsprogs, util-linux), for a small ext4 file system to fill: %v", tool, err)
		}
	}
	disk := loopExt4(t, 64<<20)
	store := filepath.Join(disk, "store")
	mnt := t.TempDir()
	// Small containers, so that deleted mail fills whole containers that
	// compaction can drop.
	harness.Run(t, "init", "--container-size", "1MiB", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")

	acked := fillUntilFull(t, mnt)
	if len(acked) < 500 {
		t.Fatalf("only %d deliveries before the disk was full", len(acked))
	}
	// The oldest half of the mail, which fills the oldest containers.
	deleted := map[int]bool{}
	for _, msg := range acked[:len(acked)/2] {
		if err := os.Remove(fullDiskPath(mnt, msg.i)); err != nil {
			t.Fatalf("rm of message %d through the mount on a full disk: %v", msg.i, err)
		}
		deleted[msg.i] = true
	}
	if err := deliverFullDisk(mnt, 1_000_000, 100); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a delivery after deleting, before compaction: %v; want ENOSPC (the space is the reserve's)", err)
	}
	m.Stop(t)
	if st, err := os.ReadFile(filepath.Join(store, "state")); err != nil || string(st) != "closed\n" {
		t.Fatalf("state after unmount: %q (%v); want closed", st, err)
	}

	harness.Run(t, "stats", store)
	harness.Run(t, "fsck", store)
	// The store's reserve (FORMAT.md) is free space kept for deletes,
	// unmount and compaction: it counts as free here.
	before := freeBytes(t, disk) + allocatedBytes(t, filepath.Join(store, "reserve"))
	out := harness.Run(t, "compact", store)
	if after := freeBytes(t, disk) + allocatedBytes(t, filepath.Join(store, "reserve")); after < before+16<<20 {
		t.Fatalf("compaction freed %d bytes of the disk and the reserve (%d -> %d); want the deleted mail's space back\n%s",
			int64(after)-int64(before), before, after, out)
	}

	m = harness.Start(t, store, mnt, "--user", "tester")
	for _, msg := range acked {
		i, want := msg.i, fullDiskMessage(msg.i, msg.size)
		got, err := os.ReadFile(fullDiskPath(mnt, i))
		switch {
		case deleted[i] && !errors.Is(err, os.ErrNotExist):
			t.Fatalf("deleted message %d: %v", i, err)
		case !deleted[i] && err != nil:
			t.Fatalf("acknowledged message %d: %v", i, err)
		case !deleted[i] && !bytes.Equal(got, want):
			t.Fatalf("acknowledged message %d: %d bytes differ from the %d delivered", i, len(got), len(want))
		}
	}
	if err := deliverFullDisk(mnt, 2_000_000, 32<<10); err != nil {
		t.Fatalf("a delivery after compaction: %v", err)
	}
	m.Stop(t)
	harness.Run(t, "fsck", store)
}

// fullDiskMsg is a delivered message: fullDiskMessage(i, size).
type fullDiskMsg struct{ i, size int }

// fillUntilFull delivers messages of 32 KiB, then 2 KiB, then 100 bytes,
// each size until the first ENOSPC, and returns the acknowledged ones.
// Any error but ENOSPC fails the test.
func fillUntilFull(t *testing.T, mnt string) []fullDiskMsg {
	var acked []fullDiskMsg
	i := 0
	for _, size := range []int{32 << 10, 2 << 10, 100} {
		for ; ; i++ {
			err := deliverFullDisk(mnt, i, size)
			if err == nil {
				acked = append(acked, fullDiskMsg{i, size})
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("delivery %d of %d bytes on a full disk: %v; want ENOSPC", i, size, err)
			}
			i++
			break
		}
	}
	return acked
}

// deliverFullDisk delivers message i as an MDA does: tmp/, fsync, rename
// into new/. Only a nil error acknowledges it.
func deliverFullDisk(mnt string, i, size int) error {
	tmp := filepath.Join(mnt, "tmp", fmt.Sprintf("m%d", i))
	err := writeSynced(tmp, string(fullDiskMessage(i, size)))
	if err == nil {
		err = os.Rename(tmp, fullDiskPath(mnt, i))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func fullDiskPath(mnt string, i int) string {
	return filepath.Join(mnt, "new", fmt.Sprintf("m%d", i))
}

// fullDiskMessage is message i: random bytes from a seed of i, so that no
// two messages share a payload and none compresses, and the test keeps no
// copy of what it delivered.
func fullDiskMessage(i, size int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(i))
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// loopExt4 makes an ext4 file system of size bytes on a loop device,
// mounts it, and returns where; the test's cleanup unmounts it and
// detaches the device even if the test fails.
func loopExt4(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(runTool(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	// -m 0: no blocks kept for root, so that full is full for everyone.
	runTool(t, "mkfs.ext4", "-q", "-m", "0", dev)
	mnt := filepath.Join(dir, "fs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mount", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// allocatedBytes is the disk space file path takes; 0 if there is none.
func allocatedBytes(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0
		}
		t.Fatal(err)
	}
	return uint64(st.Blocks) * 512
}

func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bfree * uint64(st.Bsize)
}
