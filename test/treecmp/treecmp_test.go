package treecmp

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// odd is an mtime with nanoseconds, so that a lost fraction shows.
var odd = time.Date(2002, 8, 23, 11, 4, 5, 123456789, time.UTC)

// makeTree writes a small tree with a hard link group, a symlink, a
// chmod'ed file and odd mtimes, and returns its root.
func makeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	for _, dir := range []string{"cur", ".Trash/cur"} {
		must(t, os.MkdirAll(filepath.Join(root, dir), 0o700))
	}
	must(t, os.WriteFile(filepath.Join(root, "cur/a:2,S"), []byte("From: a\n\nhello\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "cur/b:2,"), []byte("From: b\n\nworld\n"), 0o640))
	must(t, os.Link(filepath.Join(root, "cur/a:2,S"), filepath.Join(root, ".Trash/cur/a:2,ST")))
	must(t, os.Symlink("cur", filepath.Join(root, "link")))
	must(t, os.Chtimes(filepath.Join(root, "cur/b:2,"), odd, odd))
	must(t, os.Chtimes(filepath.Join(root, ".Trash"), odd, odd))
	return root
}

// copyTree copies src with cp -a (which keeps everything Scan records)
// and returns the copy.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "dst")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

func scan(t *testing.T, root string) Tree {
	t.Helper()
	tree, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestScanLinkGroups(t *testing.T) {
	tree := scan(t, makeTree(t))
	want := ".Trash/cur/a:2,ST + cur/a:2,S"
	for _, name := range []string{"cur/a:2,S", ".Trash/cur/a:2,ST"} {
		if e := tree[name]; e.Links != want || e.Nlink != 2 {
			t.Errorf("%s: links %q nlink %d, want %q and 2", name, e.Links, e.Nlink, want)
		}
	}
	if e := tree["cur/b:2,"]; e.Links != "" || !e.Mtime.Equal(odd) || e.Perm != 0o640 {
		t.Errorf("cur/b:2,: links %q mtime %v perm %v, want none, %v and 0640", e.Links, e.Mtime, e.Perm, odd)
	}
	if e := tree["link"]; e.Target != "cur" {
		t.Errorf("link: target %q, want cur", e.Target)
	}
}

// TestDiffFindsEveryChange changes one thing in an exact copy and checks
// that Diff reports it: the compare the backup tests rely on
// can fail.
func TestDiffFindsEveryChange(t *testing.T) {
	src := makeTree(t)
	want := scan(t, src)
	if d := Diff(want, scan(t, copyTree(t, src)), Options{}); len(d) > 0 {
		t.Fatalf("cp -a copy differs:\n%s", strings.Join(d, "\n"))
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dst string)
		want   string // a substring of the one expected difference
	}{
		{"content", func(t *testing.T, dst string) {
			must(t, os.WriteFile(filepath.Join(dst, "cur/b:2,"), []byte("From: b\n\nWORLD\n"), 0o640))
			must(t, os.Chtimes(filepath.Join(dst, "cur/b:2,"), odd, odd))
		}, "cur/b:2,: sha256 want"},
		{"perm", func(t *testing.T, dst string) {
			must(t, os.Chmod(filepath.Join(dst, "cur/b:2,"), 0o600))
		}, "cur/b:2,: perm want -rw-r-----, got -rw-------"},
		{"owner", func(t *testing.T, dst string) {
			// Needs root, as every integration test of packdir does.
			must(t, os.Lchown(filepath.Join(dst, "cur/b:2,"), 1001, 1002))
		}, "cur/b:2,: uid want 0, got 1001"},
		{"nanoseconds", func(t *testing.T, dst string) {
			must(t, os.Chtimes(filepath.Join(dst, "cur/b:2,"), odd, odd.Truncate(time.Second)))
		}, "cur/b:2,: mtime want 2002-08-23T11:04:05.123456789Z, got 2002-08-23T11:04:05.000000000Z"},
		{"directory mtime", func(t *testing.T, dst string) {
			must(t, os.Chtimes(filepath.Join(dst, ".Trash"), odd, odd.Add(time.Hour)))
		}, ".Trash: mtime want"},
		{"hard link broken", func(t *testing.T, dst string) {
			must(t, os.Remove(filepath.Join(dst, ".Trash/cur/a:2,ST")))
			must(t, os.WriteFile(filepath.Join(dst, ".Trash/cur/a:2,ST"), []byte("From: a\n\nhello\n"), 0o600))
			fixTimes(t, src, dst, "cur/a:2,S", ".Trash/cur/a:2,ST", ".Trash/cur")
		}, ".Trash/cur/a:2,ST: hard links want"},
		{"missing", func(t *testing.T, dst string) {
			must(t, os.Remove(filepath.Join(dst, "link")))
			fixTimes(t, src, dst, ".")
		}, "link: missing"},
		{"extra", func(t *testing.T, dst string) {
			must(t, os.WriteFile(filepath.Join(dst, "cur/c"), nil, 0o600))
			fixTimes(t, src, dst, "cur")
		}, "cur/c: extra"},
		{"symlink target", func(t *testing.T, dst string) {
			must(t, os.Remove(filepath.Join(dst, "link")))
			must(t, os.Symlink("new", filepath.Join(dst, "link")))
			fixTimes(t, src, dst, ".")
		}, "link: symlink target want cur, got new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := copyTree(t, src)
			tc.change(t, dst)
			d := Diff(want, scan(t, dst), Options{})
			if len(d) == 0 || !strings.Contains(strings.Join(d, "\n"), tc.want) {
				t.Errorf("Diff after %s:\n%s\nwant a line with %q", tc.name, strings.Join(d, "\n"), tc.want)
			}
		})
	}
}

// fixTimes gives the names in dst the mtimes they have in src again, so
// that a test's change shows only in what it is about.
func fixTimes(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	for _, name := range names {
		fi, err := os.Lstat(filepath.Join(src, name))
		must(t, err)
		must(t, os.Chtimes(filepath.Join(dst, name), fi.ModTime(), fi.ModTime()))
	}
}

// TestDiffMtimeResolution checks the rule for a tool that keeps whole
// seconds: the restored mtime must be the original truncated, no more
// and no less.
func TestDiffMtimeResolution(t *testing.T) {
	want := Tree{"f": {Mtime: odd}}
	for _, tc := range []struct {
		got   time.Time
		res   time.Duration
		equal bool
	}{
		{odd, 0, true},
		{odd.Truncate(time.Second), 0, false},
		{odd.Truncate(time.Second), time.Second, true},
		{odd, time.Second, false},
		{odd.Truncate(time.Second).Add(time.Second), time.Second, false},
	} {
		d := Diff(want, Tree{"f": {Mtime: tc.got}}, Options{MtimeResolution: tc.res})
		if (len(d) == 0) != tc.equal {
			t.Errorf("mtime %v at resolution %v: diff %q, want equal=%v", tc.got, tc.res, d, tc.equal)
		}
	}
	d := Diff(want, Tree{"f": {Mtime: odd.Add(time.Hour)}}, Options{IgnoreMtime: []string{"f"}})
	if len(d) != 0 {
		t.Errorf("IgnoreMtime: diff %q, want none", d)
	}
}
