package test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// Tests of issue 14's items about opening and checking a store: a missing
// container (1), fsck changing the store (5), a missing store.json (6),
// symlinks inside the store (10), a truncated active container (14).

// openFaultStore makes a store of 64 KiB containers, mounts it for user
// tester, delivers n messages of 20 KB (three or so to a container) and a
// 3,893-byte dovecot-uidlist, and returns the store, the mountpoint and
// the running mount.
func openFaultStore(t *testing.T, n int) (store, mnt string, m *harness.Mount) {
	t.Helper()
	harness.RequireFuse(t)
	store = filepath.Join(t.TempDir(), "store")
	mnt = t.TempDir()
	harness.Run(t, "init", "--container-size", "64KiB", "--max-message-size", "32KiB", store)
	harness.Run(t, "user", "add", "tester", store)
	m = harness.Start(t, store, mnt, "--user", "tester")
	for i := 0; i < n; i++ {
		openFaultDeliver(t, mnt, fmt.Sprintf("m%02d", i))
	}
	uidlist := strings.Repeat("3 V1 N1 G0123456789abcdef\n", 150)[:3893]
	if err := os.WriteFile(filepath.Join(mnt, "dovecot-uidlist"), []byte(uidlist), 0o600); err != nil {
		t.Fatal(err)
	}
	return store, mnt, m
}

// openFaultBody is the body of message name: distinct per name, so that
// no two are stored once.
func openFaultBody(name string) string {
	return "Subject: " + name + "\n\n" + strings.Repeat(name+" ", 20000/4)
}

// openFaultDeliver delivers message name into new/ as an MDA does.
func openFaultDeliver(t *testing.T, mnt, name string) {
	t.Helper()
	tmp := filepath.Join(mnt, "tmp", name)
	if err := os.WriteFile(tmp, []byte(openFaultBody(name)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mnt, "new", name)); err != nil {
		t.Fatal(err)
	}
}

// openFaultSums returns every file of the store with its mode, size and
// SHA-256, one per line, so that two calls compare byte for byte.
func openFaultSums(t *testing.T, store string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(store, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(store, path)
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// openFaultContainers returns the container files of the store, in order.
func openFaultContainers(t *testing.T, store string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(store, "containers", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// openFaultMountRefused runs `packdir mount` and requires it to exit non-zero
// without mounting; it returns what the command printed. If the store is
// mounted instead, the test fails and the mount is stopped.
func openFaultMountRefused(t *testing.T, store, mnt string, args ...string) string {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command(harness.Binary(t), append(append([]string{"mount"}, args...), store, mnt)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if mounted, _ := harness.IsFuseMounted(mnt); mounted {
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			if err == nil {
				t.Fatalf("packdir mount exited 0 without a mount; output:\n%s", out.String())
			}
			return out.String()
		default:
		}
		if mounted, _ := harness.IsFuseMounted(mnt); mounted {
			t.Fatalf("packdir mount mounted the store instead of refusing it; output so far:\n%s", out.String())
		}
	}
	t.Fatalf("packdir mount neither mounted nor exited in 30s; output:\n%s", out.String())
	return ""
}

// openFaultOneLine requires that out is one line holding every string of want.
func openFaultOneLine(t *testing.T, what, out string, want ...string) {
	t.Helper()
	out = strings.TrimSpace(out)
	if strings.Contains(out, "\n") || out == "" {
		t.Errorf("%s: want one line, got:\n%s", what, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: %q is not in:\n%s", what, w, out)
		}
	}
}

// openFaultRead reads path in a goroutine, which may hang in the kernel on a
// daemon that never answers; it reports what the read returned, or that
// it did not return within the harness's mount timeout.
func openFaultRead(path string) (data []byte, err error, returned bool) {
	type result struct {
		b   []byte
		err error
	}
	c := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(path)
		c <- result{b, err}
	}()
	select {
	case r := <-c:
		return r.b, r.err, true
	case <-time.After(30 * time.Second):
		return nil, nil, false
	}
}

// TestFault1MissingContainer: a store whose index names a container file
// that is not there is refused at mount, in one line naming the file and
// 'packdir fsck'; a container removed under a running mount gives EIO and
// a log line naming it, and SIGTERM still ends the daemon.
func TestFault1MissingContainer(t *testing.T) {
	store, mnt, m := openFaultStore(t, 12)
	m.Stop(t)
	cs := openFaultContainers(t, store)
	if len(cs) < 4 {
		t.Fatalf("want several containers, have %v", cs)
	}

	// Removed under a running mount: m00 is in the first container, which
	// the fresh daemon has not opened yet.
	m.Restart(t)
	if err := os.Remove(cs[0]); err != nil {
		t.Fatal(err)
	}
	_, err, returned := openFaultRead(filepath.Join(mnt, "new", "m00"))
	if !returned {
		m.Kill(t) // aborts the connection, which frees the reader
		t.Fatal("reading a message of a removed container did not return")
	}
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a message of a removed container: %v, want EIO", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "new", "m11")); err != nil || string(b) != openFaultBody("m11") {
		t.Errorf("a message of another container: %v", err)
	}
	m.Stop(t) // fails the test unless SIGTERM ends the daemon with exit 0
	if out := m.Output(); !strings.Contains(out, "00000001.pack is missing") {
		t.Errorf("no log line names the missing container; output:\n%s", out)
	}

	out := openFaultMountRefused(t, store, mnt, "--user", "tester")
	openFaultOneLine(t, "mount of a store missing a container", out, cs[0], "packdir fsck")

	// The active container removed under a running mount: a delivery
	// into its unlinked file would vanish at unmount, so it must fail.
	store, mnt, m = openFaultStore(t, 1)
	cs = openFaultContainers(t, store)
	if err := os.Remove(cs[len(cs)-1]); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(mnt, "tmp", "late")
	if err := os.WriteFile(tmp, []byte(openFaultBody("late")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mnt, "new", "late")); !errors.Is(err, syscall.EIO) {
		t.Errorf("delivery into a removed active container: %v, want EIO", err)
	}
	m.Kill(t) // its store cannot be closed cleanly
	if out := m.Output(); !strings.Contains(out, "was deleted while open") {
		t.Errorf("no log line says the active container was deleted; output:\n%s", out)
	}
}

// TestFault1FsckMissingContainer: fsck calls a lost container missing
// (not "compacted away") and names its messages; fsck --rebuild of a
// store whose only container is gone says what it could not recover and
// exits non-zero.
func TestFault1FsckMissingContainer(t *testing.T) {
	store, _, m := openFaultStore(t, 12)
	m.Stop(t)
	cs := openFaultContainers(t, store)
	if err := os.Remove(cs[0]); err != nil {
		t.Fatal(err)
	}
	out, _, code := harness.RunExit(t, "fsck", store)
	if code == 0 || strings.Contains(out, "compacted away") || !strings.Contains(out, cs[0]+" is missing") ||
		!strings.Contains(out, "damaged message /tester/new/m00") {
		t.Errorf("fsck of a store missing %s: exit %d, output:\n%s", cs[0], code, out)
	}

	store, _, m = openFaultStore(t, 1)
	m.Stop(t)
	cs = openFaultContainers(t, store)
	if len(cs) != 1 {
		t.Fatalf("want one container, have %v", cs)
	}
	if err := os.Remove(cs[0]); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := harness.RunExit(t, "fsck", "--rebuild", store)
	if code == 0 || strings.Contains(out, "no problems found") || !strings.Contains(out, cs[0]+" is missing") ||
		!strings.Contains(out, "/tester/new/m00") {
		t.Errorf("fsck --rebuild of a store whose only container is gone: exit %d, output:\n%s%s", code, out, errOut)
	}
}

// TestFault5FsckReadOnly: fsck changes no byte of a store, clean or left
// open by kill -9, and reports a side file whose spool file is gone.
func TestFault5FsckReadOnly(t *testing.T) {
	store, _, m := openFaultStore(t, 6)
	m.Kill(t)
	before := openFaultSums(t, store)
	out, _, code := harness.RunExit(t, "fsck", store)
	if after := openFaultSums(t, store); after != before {
		t.Errorf("fsck changed a store left open by kill -9:\nbefore:\n%s\nafter:\n%s\nfsck:\n%s", before, after, out)
	}
	if code == 0 || !strings.Contains(out, "not closed cleanly") {
		t.Errorf("fsck of a store left open by kill -9: exit %d, output:\n%s", code, out)
	}
	// stats is a report too: it changes nothing, and says the figures are
	// from before recovery.
	for _, args := range [][]string{{"stats", store}, {"stats", "--json", store}, {"user", "list", store}} {
		out, errOut, code := harness.RunExit(t, args[0], args[1:]...)
		if args[0] == "user" {
			if code != 0 || !strings.Contains(out, "tester") {
				t.Errorf("packdir user list of a store left open by kill -9: exit %d, output:\n%s\n%s", code, out, errOut)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "messages") || !strings.Contains(errOut, "not closed cleanly") {
			t.Errorf("packdir %v of a store left open by kill -9: exit %d, output:\n%s\n%s", args, code, out, errOut)
		}
	}
	if after := openFaultSums(t, store); after != before {
		t.Errorf("stats or user list changed a store left open by kill -9:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	store, _, m = openFaultStore(t, 6)
	m.Stop(t)
	before = openFaultSums(t, store)
	if out := harness.Run(t, "fsck", store); !strings.Contains(out, "no problems found") {
		t.Errorf("fsck of a clean store:\n%s", out)
	}
	if after := openFaultSums(t, store); after != before {
		t.Errorf("fsck changed a clean store:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// dovecot-uidlist's spool file is the one of 3,893 bytes (the others
	// are the empty maildirfolder files of the default folders).
	spool, err := filepath.Glob(filepath.Join(store, "spool", "*"))
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, path := range spool {
		if fi, err := os.Stat(path); err == nil && fi.Size() == 3893 {
			removed++
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}
	}
	if removed != 1 {
		t.Fatalf("want one spool file of 3,893 bytes among %v", spool)
	}
	before = openFaultSums(t, store)
	out, _, code = harness.RunExit(t, "fsck", store)
	if code == 0 || !strings.Contains(out, "no spool file") {
		t.Errorf("fsck with the spool file of a side file deleted: exit %d, output:\n%s", code, out)
	}
	if after := openFaultSums(t, store); after != before {
		t.Errorf("fsck changed a store missing a spool file:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestFault6MissingStoreJSON: a store without store.json is refused by
// mount, init and fsck in one line, with nothing written; fsck --rebuild
// recovers the store id from the container headers, and the store mounts
// with all its mail.
func TestFault6MissingStoreJSON(t *testing.T) {
	store, mnt, m := openFaultStore(t, 8)
	m.Stop(t)
	type config struct {
		StoreID string `json:"store_id"`
		Dedup   string `json:"dedup"`
	}
	readConfig := func() config {
		var cfg config
		b, err := os.ReadFile(filepath.Join(store, "store.json"))
		if err == nil {
			err = json.Unmarshal(b, &cfg)
		}
		if err != nil || len(cfg.StoreID) != 32 {
			t.Fatalf("store.json: %v %q", err, b)
		}
		return cfg
	}
	cfg := readConfig()
	if err := os.Remove(filepath.Join(store, "store.json")); err != nil {
		t.Fatal(err)
	}
	before := openFaultSums(t, store)
	openFaultOneLine(t, "mount without store.json", openFaultMountRefused(t, store, mnt, "--user", "tester"), "store.json", "fsck --rebuild")
	for _, cmd := range [][]string{{"init", store}, {"fsck", store}, {"stats", store}} {
		_, errOut, code := harness.RunExit(t, cmd[0], cmd[1:]...)
		if code == 0 {
			t.Errorf("packdir %s without store.json: exit 0", cmd[0])
		}
		openFaultOneLine(t, "packdir "+cmd[0]+" without store.json", errOut, "store.json", "fsck --rebuild")
	}
	if after := openFaultSums(t, store); after != before {
		t.Errorf("refusing a store without store.json changed it:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	out := harness.Run(t, "fsck", "--rebuild", store)
	if !strings.Contains(out, cfg.StoreID) || !strings.Contains(out, "no problems found") {
		t.Errorf("fsck --rebuild does not name the store id %s:\n%s", cfg.StoreID, out)
	}
	if got := readConfig(); got != cfg {
		t.Errorf("store.json recovered from the containers: %+v, want %+v (the id from the headers, the de-duplication scope from the payload records)", got, cfg)
	}
	harness.Start(t, store, mnt, "--user", "tester")
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("m%02d", i)
		if b, err := os.ReadFile(filepath.Join(mnt, "new", name)); err != nil || string(b) != openFaultBody(name) {
			t.Errorf("message %s after the repair: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(mnt, "dovecot-uidlist")); err != nil || fi.Size() != 3893 {
		t.Errorf("dovecot-uidlist after the repair: %v", err)
	}
}

// TestFault10SymlinkInStore: index.db, a container or spool/ that is a
// symbolic link is refused in one line, and the link's target untouched.
func TestFault10SymlinkInStore(t *testing.T) {
	store, mnt, m := openFaultStore(t, 4)
	m.Stop(t)
	away := t.TempDir()
	for _, name := range []string{"index.db", "containers/00000001.pack", "spool"} {
		path, target := filepath.Join(store, name), filepath.Join(away, filepath.Base(name))
		if err := os.Rename(path, target); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		before := openFaultSums(t, away)
		openFaultOneLine(t, "mount with "+name+" a symlink", openFaultMountRefused(t, store, mnt, "--user", "tester"), path, "symbolic link")
		_, errOut, code := harness.RunExit(t, "fsck", store)
		if code == 0 {
			t.Errorf("fsck with %s a symlink: exit 0", name)
		}
		openFaultOneLine(t, "fsck with "+name+" a symlink", errOut, path, "symbolic link")
		if after := openFaultSums(t, away); after != before {
			t.Errorf("the target of %s changed:\nbefore:\n%s\nafter:\n%s", name, before, after)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(target, path); err != nil {
			t.Fatal(err)
		}
	}
	if out := harness.Run(t, "fsck", store); !strings.Contains(out, "no problems found") {
		t.Errorf("fsck once the links are replaced by their targets:\n%s", out)
	}
}

// TestFault14TruncatedActiveContainer: the active container of a cleanly
// closed store, truncated, is refused at mount (in one line naming it)
// rather than appended to after a gap of zeros; fsck reports it, and
// fsck --rebuild recovers what is left and names what it could not.
func TestFault14TruncatedActiveContainer(t *testing.T) {
	store, mnt, m := openFaultStore(t, 5)
	openFaultDeliver(t, mnt, "last") // the last records: its payload and commit
	m.Stop(t)
	cs := openFaultContainers(t, store)
	active := cs[len(cs)-1]
	fi, err := os.Stat(active)
	if err != nil || fi.Size() < 1000 {
		t.Fatalf("active container %s: %v, %d bytes", active, err, fi.Size())
	}
	size := fi.Size() - 100
	if err := os.Truncate(active, size); err != nil {
		t.Fatal(err)
	}
	openFaultOneLine(t, "mount of a truncated active container", openFaultMountRefused(t, store, mnt, "--user", "tester"), active, "truncated")
	if fi, err := os.Stat(active); err != nil || fi.Size() != size {
		t.Errorf("the truncated container changed: %v", err)
	}
	out, _, code := harness.RunExit(t, "fsck", store)
	if code == 0 || !strings.Contains(out, "truncated") {
		t.Errorf("fsck of a truncated active container: exit %d, output:\n%s", code, out)
	}

	out, _, code = harness.RunExit(t, "fsck", "--rebuild", store)
	if code == 0 || !strings.Contains(out, "not recovered: /tester/new/last") {
		t.Errorf("fsck --rebuild of a truncated active container: exit %d, output:\n%s", code, out)
	}
	m = harness.Start(t, store, mnt, "--user", "tester")
	openFaultDeliver(t, mnt, "after")
	m.Stop(t)
	if out := harness.Run(t, "fsck", store); !strings.Contains(out, "no problems found") {
		t.Errorf("fsck after the rebuild and a delivery:\n%s", out)
	}
}

// TestNewStoreOpensQuietly: the first opens of a store just made build
// its index from its one empty container, which is no news; an index
// lost later and rebuilt from the containers is, and is logged.
func TestNewStoreOpensQuietly(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	for _, args := range [][]string{{"init", store}, {"user", "add", "tester", store}, {"user", "list", store}} {
		if _, errOut, code := harness.RunExit(t, args[0], args[1:]...); code != 0 || strings.Contains(errOut, "rebuilding") {
			t.Errorf("packdir %v of a new store: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	if err := os.Remove(filepath.Join(store, "index.db")); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := harness.RunExit(t, "user", "add", "other", store); code != 0 || !strings.Contains(errOut, "rebuilding it from the containers") {
		t.Errorf("packdir user add on a store whose index.db was removed: exit %d, stderr:\n%s", code, errOut)
	}
}
