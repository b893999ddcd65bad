package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// wantCLIError checks that a packdir command failed the way the CLI
// promises: the exit status given, and one line on stderr that starts with
// "packdir: " and says what went wrong (each of want appears in it).
func wantCLIError(t *testing.T, args []string, code int, want ...string) {
	t.Helper()
	stdout, stderr, got := harness.RunExit(t, args[0], args[1:]...)
	checkRefusal(t, "packdir "+strings.Join(args, " "), code, got, stdout, stderr, want)
}

// TestCLIUsageErrors: a command line that makes no sense gets a one-line
// explanation and exit status 2, and creates nothing.
func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"mount", "--bogus", store, dir}, []string{"bogus", "packdir mount --help"}},
		{[]string{"mount", store}, []string{"mount needs 2 arguments"}},
		{[]string{"mount", "--durability", "sometimes", store, dir}, []string{"--durability", "sometimes"}},
		{[]string{"mount", "--max-inodes", "0", store, dir}, []string{"--max-inodes", "0"}},
		{[]string{"init", "--container-size", "big", store}, []string{"--container-size", "big"}},
		{[]string{"init", "--max-containers", "-1", store}, []string{"--max-containers"}},
		{[]string{"init"}, []string{"init needs 1 argument"}},
		{[]string{"fsck", store, "extra"}, []string{"fsck needs 1 argument"}},
		{[]string{"frobnicate"}, []string{"frobnicate"}},
	}
	for _, c := range cases {
		wantCLIError(t, c.args, 2, c.want...)
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("a failed command line left %s behind (stat: %v)", store, err)
	}
}

// TestCLIStoreErrors: a missing or busy mountpoint, a store mounted
// elsewhere, a store of an unknown format and a directory that is no store
// each get a one-line error and exit status 1.
func TestCLIStoreErrors(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}

	wantCLIError(t, []string{"mount", store, filepath.Join(dir, "nowhere")}, 1, "nowhere", "no such file")
	wantCLIError(t, []string{"fsck", filepath.Join(dir, "nostore")}, 1, "is not a packdir store", "packdir init")
	wantCLIError(t, []string{"stats", filepath.Join(dir, "nostore")}, 1, "is not a packdir store")

	m := harness.Start(t, store, mnt, "--user", "alice")
	other := filepath.Join(dir, "other")
	wantCLIError(t, []string{"mount", other, mnt}, 1, "is busy")
	mnt2 := filepath.Join(dir, "mnt2")
	if err := os.Mkdir(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	wantCLIError(t, []string{"mount", store, mnt2}, 1, "already mounted by another packdir")
	wantCLIError(t, []string{"fsck", store}, 1, "in use by a running packdir")
	wantCLIError(t, []string{"user", "add", "bob", store}, 1, "in use")
	m.Stop(t)

	setFormat(t, store, 99)
	wantCLIError(t, []string{"mount", store, mnt}, 1, "format 99", "reads format 1")
	wantCLIError(t, []string{"fsck", store}, 1, "format 99")
	if entries, err := os.ReadDir(mnt); err != nil || len(entries) != 0 {
		t.Errorf("after a refused mount, %s holds %d entries (err %v); want an empty, unmounted directory", mnt, len(entries), err)
	}
}

// setFormat rewrites the format version in a store's store.json.
func setFormat(t *testing.T, store string, format int) {
	t.Helper()
	path := filepath.Join(store, "store.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfg["format"] = format
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCLIHelp: every command explains itself with --help, with examples.
func TestCLIHelp(t *testing.T) {
	for _, cmd := range [][]string{
		{"--help"}, {"mount", "--help"}, {"init", "--help"}, {"user", "--help"},
		{"user", "add", "--help"}, {"user", "list", "--help"}, {"fsck", "--help"}, {"stats", "--help"},
	} {
		out := harness.Run(t, cmd[0], cmd[1:]...)
		if !strings.Contains(out, "USAGE") || !strings.Contains(out, "packdir") {
			t.Errorf("packdir %s: no usage:\n%s", strings.Join(cmd, " "), out)
		}
		if !strings.Contains(out, "Example") {
			t.Errorf("packdir %s: no examples:\n%s", strings.Join(cmd, " "), out)
		}
	}
}
