package test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestSpamAssassinCorpusRoundTrip copies the 6,046-message SpamAssassin
// Maildir++ tree into a mount with cp -a, remounts, and reads every message
// back byte for byte under the same name, while the store holds a handful
// of files rather than one per message.
func TestSpamAssassinCorpusRoundTrip(t *testing.T) {
	harness.RequireFuse(t)
	corpus := filepath.Join(harness.Corpus(t), "spamassassin")
	sums := corpusSums(t, "spamassassin/")
	if len(sums) < 6000 {
		t.Fatalf("SHA256SUMS lists %d spamassassin files, want the whole corpus (6,046)", len(sums))
	}

	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	if out, err := exec.Command("cp", "-a", corpus+"/.", mnt+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s/. %s/: %v\n%s", corpus, mnt, err, firstLines(string(out), 20))
	}
	m.Stop(t)
	harness.Run(t, "fsck", store)
	if n := countFiles(t, store); n >= 50 {
		t.Errorf("the store holds %d files for %d messages, want a handful (under 50)", n, len(sums))
	}

	harness.Start(t, store, mnt, "--user", "tester")
	for rel, want := range sums {
		if got := fileSum(t, filepath.Join(mnt, rel)); got != want {
			t.Errorf("%s: sha256 through the mount %s, corpus says %s", rel, got, want)
		}
	}
	compareTrees(t, corpus, mnt)
}

// compareTrees checks that each folder of the corpus (.easy_ham, ...) has
// exactly the same directories and file names in the mount, and that the
// mount's root holds nothing but those folders and the default ones.
func compareTrees(t *testing.T, corpus, mnt string) {
	t.Helper()
	folders := readNames(t, corpus)
	for _, folder := range folders {
		want := treeNames(t, filepath.Join(corpus, folder))
		got := treeNames(t, filepath.Join(mnt, folder))
		missing, extra := diffNames(want, got)
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("%s: %d names missing from the mount %s, %d extra %s",
				folder, len(missing), head(missing), len(extra), head(extra))
		}
	}
	defaults := []string{".Draft", ".Outbox", ".Trash", "cur", "new", "tmp"}
	missing, extra := diffNames(append(folders, defaults...), readNames(t, mnt))
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("mount root: missing %q, extra %q", missing, extra)
	}
}

// corpusSums reads the corpus's SHA256SUMS ("HASH  ./spamassassin/.spam/cur/NAME")
// and returns the hashes of the files under prefix, keyed by their path
// relative to prefix.
func corpusSums(t *testing.T, prefix string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(harness.Corpus(t), "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("SHA256SUMS: bad line %q", sc.Text())
		}
		name = strings.TrimPrefix(name, "./")
		if rel, ok := strings.CutPrefix(name, prefix); ok {
			sums[rel] = sum
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Errorf("reading %s: %v", path, err)
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// treeNames lists every directory and file below root, relative to it,
// directories with a trailing slash.
func treeNames(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, rel)
		return err
	})
	if err != nil {
		t.Errorf("walking %s: %v", root, err)
	}
	return names
}

func readNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// countFiles is `find dir -type f | wc -l`.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// diffNames returns the names in want but not in got, and in got but not in want.
func diffNames(want, got []string) (missing, extra []string) {
	in := func(names []string) map[string]bool {
		m := make(map[string]bool, len(names))
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	w, g := in(want), in(got)
	for n := range w {
		if !g[n] {
			missing = append(missing, n)
		}
	}
	for n := range g {
		if !w[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// head quotes up to the first 5 names, for an error message.
func head(names []string) string {
	if len(names) > 5 {
		return strings.Join(quote(names[:5]), ", ") + ", ..."
	}
	return strings.Join(quote(names), ", ")
}

func quote(names []string) []string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + n + `"`
	}
	return q
}

// TestDefaultFolders checks the tree a fresh mount with --user creates:
// INBOX's tmp/new/cur at the root, and .Draft .Outbox .Trash as Maildir++
// folders with tmp/new/cur and a maildirfolder file.
func TestDefaultFolders(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Start(t, store, mnt, "--user", "tester")

	for _, sub := range []string{"tmp", "new", "cur"} {
		requireDir(t, filepath.Join(mnt, sub))
	}
	for _, folder := range []string{".Draft", ".Outbox", ".Trash"} {
		dir := filepath.Join(mnt, folder)
		requireDir(t, dir)
		for _, sub := range []string{"tmp", "new", "cur"} {
			requireDir(t, filepath.Join(dir, sub))
		}
		fi, err := os.Stat(filepath.Join(dir, "maildirfolder"))
		if err != nil {
			t.Errorf("%s: %v", folder, err)
		} else if !fi.Mode().IsRegular() {
			t.Errorf("%s/maildirfolder is %v, want a regular file", folder, fi.Mode())
		}
	}
}

func requireDir(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
	} else if !fi.IsDir() {
		t.Errorf("%s is %v, want a directory", path, fi.Mode())
	}
}

// firstLines returns up to n lines of s, and how many more there were.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("... and %d more lines\n", len(lines)-n)
}
