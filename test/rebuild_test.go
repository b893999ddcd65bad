package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/backend/record"
	"github.com/packdir/packdir/test/harness"
)

// TestRebuildFromContainers fills a store through a mount (folders,
// deliveries from the corpus, flag changes, moves, hard links, deletions,
// side files, chmod, utimes, a removed folder), records a full listing,
// deletes index.db, runs `packdir fsck --rebuild`, mounts again and
// requires the very same listing: every path, type, mode, owner, size,
// mtime in nanoseconds, inode number and hard-link grouping, and the
// bytes of every file.
func TestRebuildFromContainers(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", "--container-size", "256KiB", store) // several containers
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	fillThroughMount(t, mnt)
	before := treeListing(t, mnt)
	folders := countFolders(t, mnt)
	m.Stop(t)

	if err := os.Remove(filepath.Join(store, "index.db")); err != nil {
		t.Fatal(err)
	}
	out := harness.Run(t, "fsck", "--rebuild", store)
	if !strings.Contains(out, "no problems found") {
		t.Fatalf("fsck --rebuild:\n%s", out)
	}
	checkFolderStats(t, store, folders)
	harness.Start(t, store, mnt, "--user", "tester")
	if after := treeListing(t, mnt); after != before {
		t.Fatalf("the tree differs after the rebuild:\n%s", diffLines(before, after))
	}
	if n := len(before); n < 1000 {
		t.Fatalf("listing is only %d bytes: the fill did not happen", n)
	}
}

// countFolders counts, for `packdir stats`, the messages of each folder
// of the mounted tree (a directory with a cur/): all, unseen (in new/, or
// without S among the flags after ":2,"), flagged (F) and trashed (T).
func countFolders(t *testing.T, mnt string) string {
	t.Helper()
	var lines []string
	for _, folder := range append([]string{"."}, readNames(t, mnt)...) {
		if _, err := os.Stat(filepath.Join(mnt, folder, "cur")); err != nil {
			continue
		}
		var all, unseen, flagged, trashed int
		for _, sub := range []string{"new", "cur"} {
			for _, name := range readNames(t, filepath.Join(mnt, folder, sub)) {
				i := strings.LastIndex(name, ":2,")
				flags := ""
				if i >= 0 {
					flags = name[i+3:]
				}
				all++
				if sub == "new" || !strings.Contains(flags, "S") {
					unseen++
				}
				if strings.Contains(flags, "F") {
					flagged++
				}
				if strings.Contains(flags, "T") {
					trashed++
				}
			}
		}
		name := folder
		if folder == "." {
			name = "INBOX"
		}
		lines = append(lines, fmt.Sprintf("%s messages=%d unseen=%d flagged=%d trashed=%d", name, all, unseen, flagged, trashed))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// checkFolderStats compares the folders of `packdir stats --json` with
// countFolders' count.
func checkFolderStats(t *testing.T, store, want string) {
	t.Helper()
	var st struct {
		FolderList []struct {
			User, Folder                       string
			Messages, Unseen, Flagged, Trashed int
		} `json:"folder_list"`
	}
	if err := json.Unmarshal([]byte(harness.Run(t, "stats", "--json", store)), &st); err != nil {
		t.Fatalf("packdir stats --json: %v", err)
	}
	var lines []string
	for _, f := range st.FolderList {
		lines = append(lines, fmt.Sprintf("%s messages=%d unseen=%d flagged=%d trashed=%d", f.Folder, f.Messages, f.Unseen, f.Flagged, f.Trashed))
	}
	sort.Strings(lines)
	if got := strings.Join(lines, "\n"); got != want {
		t.Errorf("packdir stats counts per folder:\n%s\nthe mount shows:\n%s", got, want)
	}
}

// fillThroughMount makes a Maildir++ tree with everything the index must
// remember.
func fillThroughMount(t *testing.T, mnt string) {
	t.Helper()
	msgs := corpusMessages(t, ".easy_ham", 120)
	mustDo(t, os.MkdirAll(filepath.Join(mnt, ".Lists.golang", "tmp"), 0o700))
	mustDo(t, os.Mkdir(filepath.Join(mnt, ".Lists.golang", "new"), 0o700))
	mustDo(t, os.Mkdir(filepath.Join(mnt, ".Lists.golang", "cur"), 0o700))
	mustDo(t, os.WriteFile(filepath.Join(mnt, ".Lists.golang", "maildirfolder"), nil, 0o600))
	for i, data := range msgs {
		name := fmt.Sprintf("%d.M%dP1.rebuild", 1030000000+i, i)
		tmp := filepath.Join(mnt, "tmp", name)
		mustDo(t, os.WriteFile(tmp, data, 0o600))
		if i%3 == 0 {
			mustDo(t, os.Link(tmp, filepath.Join(mnt, "new", name)))
			mustDo(t, os.Remove(tmp))
		} else {
			mustDo(t, os.Rename(tmp, filepath.Join(mnt, "new", name)))
		}
		changeMessage(t, mnt, name, i)
	}
	sideFiles(t, mnt)
	mustDo(t, os.MkdirAll(filepath.Join(mnt, ".Old", "cur"), 0o700))
	mustDo(t, os.Remove(filepath.Join(mnt, ".Old", "cur")))
	mustDo(t, os.Remove(filepath.Join(mnt, ".Old")))
}

// changeMessage does to delivered message i what MUAs and servers do:
// flags, moves, links, deletion, chmod and utimes.
func changeMessage(t *testing.T, mnt, name string, i int) {
	t.Helper()
	cur := filepath.Join(mnt, "cur", name+":2,S")
	if i%10 == 9 {
		return // stays in new/
	}
	mustDo(t, os.Rename(filepath.Join(mnt, "new", name), cur))
	switch i % 9 {
	case 1:
		mustDo(t, os.Rename(cur, filepath.Join(mnt, "cur", name+":2,FS")))
	case 2:
		mustDo(t, os.Rename(cur, filepath.Join(mnt, ".Lists.golang", "cur", name+":2,S")))
	case 3:
		mustDo(t, os.Link(cur, filepath.Join(mnt, ".Lists.golang", "cur", name+":2,S")))
	case 4:
		mustDo(t, os.Remove(cur))
	case 5:
		mustDo(t, os.Chmod(cur, 0o640))
	case 6:
		odd := time.Date(2002, 8, 23, 11, 4, 5, 123456789+i, time.UTC)
		mustDo(t, os.Chtimes(cur, odd, odd))
	case 7:
		mustDo(t, os.Rename(cur, filepath.Join(mnt, ".Trash", "cur", name+":2,ST")))
	}
}

// sideFiles writes the files Dovecot and MUAs keep beside the messages.
func sideFiles(t *testing.T, mnt string) {
	t.Helper()
	mustDo(t, os.WriteFile(filepath.Join(mnt, "subscriptions"), []byte("Lists.golang\nTrash\n"), 0o600))
	mustDo(t, os.WriteFile(filepath.Join(mnt, "dovecot-uidlist"), []byte("3 V1 N121 Gabc\n"), 0o600))
	uidlist := filepath.Join(mnt, ".Lists.golang", "dovecot-uidlist")
	mustDo(t, os.WriteFile(uidlist+".lock", []byte("3 V1 N9\n1 a\n"), 0o600))
	mustDo(t, os.Rename(uidlist+".lock", uidlist))
	mustDo(t, os.Chmod(filepath.Join(mnt, "subscriptions"), 0o644))
	odd := time.Date(2011, 3, 4, 5, 6, 7, 891011121, time.UTC)
	mustDo(t, os.Chtimes(filepath.Join(mnt, "dovecot-uidlist"), odd, odd))
	mustDo(t, os.WriteFile(filepath.Join(mnt, "maildirsize"), []byte("0S,0C\n"), 0o600))
	mustDo(t, os.Truncate(filepath.Join(mnt, "maildirsize"), 3))
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// corpusMessages reads the first n messages of a corpus folder.
func corpusMessages(t *testing.T, folder string, n int) [][]byte {
	t.Helper()
	dir := filepath.Join(harness.Corpus(t), "spamassassin", folder, "cur")
	names := readNames(t, dir)
	sort.Strings(names)
	if len(names) < n {
		t.Fatalf("%s has %d messages, want %d", dir, len(names), n)
	}
	var out [][]byte
	for _, name := range names[:n] {
		b, err := os.ReadFile(filepath.Join(dir, name))
		mustDo(t, err)
		out = append(out, b)
	}
	return out
}

// treeListing describes every name below root, one line each, sorted:
// path, type and mode, owner, link count, size, mtime in nanoseconds,
// inode number and the first path of its inode (hard links), and the
// sha256 of each file's bytes.
func treeListing(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	first := map[uint64]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		if _, ok := first[st.Ino]; !ok || d.IsDir() {
			first[st.Ino] = rel
		}
		sum := ""
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		lines = append(lines, fmt.Sprintf("%s mode=%o uid=%d gid=%d nlink=%d size=%d mtime=%d.%09d ino=%d inode-of=%s %s",
			rel, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino, first[st.Ino], sum))
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", root, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// diffLines shows the lines only in a and only in b.
func diffLines(a, b string) string {
	in := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		in[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		in[l]--
	}
	var out []string
	for l, n := range in {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] })
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}

// TestRebuildRefusedWhileMounted: `packdir fsck --rebuild` on a mounted
// store refuses and leaves index.db alone; a rebuild beside the running
// daemon would replay (and could cut as a torn tail) the journal the
// daemon is appending to.
func TestRebuildRefusedWhileMounted(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "tester", store)
	harness.Start(t, store, mnt, "--user", "tester")
	deliverAll(t, mnt, [][]byte{[]byte("Subject: one\n\nbody\n")})
	stdout, stderr, code := harness.RunExit(t, "fsck", "--rebuild", store)
	if code == 0 || !strings.Contains(stderr, "in use by a running packdir") {
		t.Errorf("fsck --rebuild on a mounted store: exit %d\n%s%s", code, stdout, stderr)
	}
	if old, _ := filepath.Glob(filepath.Join(store, "index.db.old-*")); len(old) > 0 {
		t.Errorf("fsck --rebuild moved the index of a mounted store to %s", old)
	}
	deliverAll(t, mnt, [][]byte{[]byte("Subject: two\n\nbody\n")}) // the daemon serves on
}

// TestRebuildFailureKeepsIndex: a rebuild that cannot replay the journal
// (a damaged record in a sealed container) puts the old index back, so
// that the store still mounts and every undamaged message reads.
func TestRebuildFailureKeepsIndex(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", "--container-size", "64KiB", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	msgs := corpusMessages(t, ".easy_ham", 60)
	names := deliverAll(t, mnt, msgs)
	m.Stop(t)
	pack := filepath.Join(store, "containers", "00000001.pack")
	if _, err := os.Stat(filepath.Join(store, "containers", "00000002.pack")); err != nil {
		t.Fatalf("want container 1 sealed: %v", err)
	}
	flipAt(t, pack, payloadOffset(t, pack, msgs[0])+record.RecordHeaderSize+32+4+5)

	stdout, stderr, code := harness.RunExit(t, "fsck", "--rebuild", store)
	if code == 0 || !strings.Contains(stdout, "the rebuild failed: put the index back") {
		t.Fatalf("fsck --rebuild over a damaged sealed container: exit %d\n%s%s", code, stdout, stderr)
	}
	harness.Start(t, store, mnt, "--user", "tester")
	for i, name := range names[1:] {
		if got, err := os.ReadFile(filepath.Join(mnt, "cur", name)); err != nil || !bytes.Equal(got, msgs[i+1]) {
			t.Errorf("%s after the failed rebuild: %v", name, err)
		}
	}
}
