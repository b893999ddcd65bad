package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestProbeUsageNamesSubcommand: a usage error of a subcommand of `user`
// points to that subcommand's help by its whole name. Before, `packdir
// user list STORE extra` said "list: name the store as an argument or
// with --store (see 'packdir list --help')", though the store was given
// and 'packdir list' is no command; `user add --uid -1` pointed to
// 'packdir add --help'.
func TestProbeUsageNamesSubcommand(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"user", "list", store, "extra"}, []string{"user list", "1 argument", "got 2", "'packdir user list --help'"}},
		{[]string{"user", "list"}, []string{"user list: name the store", "'packdir user list --help'"}},
		{[]string{"user", "add", "--uid", "-1", "x", store}, []string{"-uid", "'packdir user add --help'"}},
		{[]string{"user", "set", "--quota-bytes", "1MiB", "x", store, "extra"}, []string{"user set", "'packdir user set --help'"}},
		{[]string{"fsck", store, "extra"}, []string{"fsck needs 1 argument", "'packdir fsck --help'"}},
	}
	for _, c := range cases {
		wantCLIError(t, c.args, 2, c.want...)
	}
}

// TestProbeSecondMountAfterIndexRemoved: with index.db removed under a
// running mount, a second mount and `fsck --rebuild` refuse the store as
// in use. Before, both went ahead: the second mount rebuilt an index of
// its own and appended to the same containers as the first, and of 40
// deliveries acknowledged through the two, 20 were gone after a remount.
func TestProbeSecondMountAfterIndexRemoved(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireFuse(t)
	dir := t.TempDir()
	store, first := filepath.Join(dir, "store"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(first, 0o755); err != nil {
		t.Fatal(err)
	}
	harness.Start(t, store, first, "--user", "tester")
	if err := os.Remove(filepath.Join(store, "index.db")); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "mnt2")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ok, _ := harness.IsFuseMounted(second); ok {
			exec.Command("umount", "-l", second).Run()
		}
	})
	// A mount that wrongly succeeds runs in the foreground: a timeout ends it.
	cmd := exec.Command("timeout", "10", harness.Binary(t), "mount", "--user", "tester", store, second)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already mounted") && !strings.Contains(string(out), "in use") {
		t.Errorf("second mount with index.db removed under the first: %v\n%s", err, out)
	}
	wantCLIError(t, []string{"fsck", "--rebuild", store}, 1, "in use")
}

// TestProbeReadOnlyStoreNotDamaged: a store on a file system mounted
// read-only (a disk remounted ro after errors, a snapshot) is not called
// damaged. Before, mount said "index.db is damaged (open ...: read-only
// file system); run 'packdir fsck --rebuild'", sending the admin to
// rebuild an index that is fine.
func TestProbeReadOnlyStoreNotDamaged(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireFuse(t)
	dir := t.TempDir()
	store, ro, mnt := filepath.Join(dir, "store"), filepath.Join(dir, "ro"), filepath.Join(dir, "mnt")
	for _, d := range []string{ro, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "--uid", "1001", "--gid", "1001", "tester", store)
	if out, err := exec.Command("mount", "--bind", store, ro).CombinedOutput(); err != nil {
		t.Fatalf("bind mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", ro).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if ok, _ := harness.IsFuseMounted(mnt); ok {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	cmd := exec.Command("timeout", "10", harness.Binary(t), "mount", "--user", "tester", ro, mnt)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "read-only file system") ||
		strings.Contains(string(out), "damaged") || strings.Contains(string(out), "--rebuild") {
		t.Errorf("mount of a store on a read-only file system: %v\n%s", err, out)
	}
}
