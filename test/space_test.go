package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// spaceStats is the part of `packdir stats --json` these tests read.
type spaceStats struct {
	Messages       int    `json:"messages"`
	MessageBytes   uint64 `json:"message_bytes"`
	ContainerBytes uint64 `json:"container_bytes"`
	Containers     []struct {
		Number uint32 `json:"number"`
	} `json:"containers"`
}

func spaceStatsOf(t *testing.T, store string) spaceStats {
	t.Helper()
	var st spaceStats
	if err := json.Unmarshal([]byte(harness.Run(t, "stats", "--json", store)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCompressedCorpusDeleteHalfCompact loads the whole SpamAssassin corpus
// into a zstd-compressed store with cp -a and reads every message back
// byte for byte with its original size; then deletes every second message
// through the mount, compacts the unmounted store with `packdir compact`,
// and checks that the store shrank, fsck (also after --rebuild from the
// containers alone) is clean, and exactly the kept messages remain.
func TestCompressedCorpusDeleteHalfCompact(t *testing.T) {
	harness.RequireFuse(t)
	corpus := filepath.Join(harness.Corpus(t), "spamassassin")
	sums := corpusSums(t, "spamassassin/")
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", "--compression", "zstd", "--container-size", "4MiB", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	if out, err := exec.Command("cp", "-a", corpus+"/.", mnt+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, firstLines(string(out), 20))
	}
	var corpusBytes uint64
	for rel, want := range sums {
		fi, err := os.Stat(filepath.Join(corpus, rel))
		if err != nil {
			t.Fatal(err)
		}
		corpusBytes += uint64(fi.Size())
		got, err := os.Stat(filepath.Join(mnt, rel))
		if err != nil || got.Size() != fi.Size() {
			t.Fatalf("%s: st_size through the mount %v (%v), original %d", rel, got, err, fi.Size())
		}
		if sum := fileSum(t, filepath.Join(mnt, rel)); sum != want {
			t.Fatalf("%s: sha256 %s, corpus says %s", rel, sum, want)
		}
	}
	m.Stop(t)
	full := spaceStatsOf(t, store)
	if full.MessageBytes != corpusBytes || full.ContainerBytes*10 > corpusBytes*8 {
		t.Fatalf("compressed store: %d message bytes (corpus %d) in %d container bytes; want the corpus size in at most 80%%",
			full.MessageBytes, corpusBytes, full.ContainerBytes)
	}

	m = harness.Start(t, store, mnt, "--user", "tester")
	rels := make([]string, 0, len(sums))
	for rel := range sums {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	kept := map[string]string{}
	for i, rel := range rels {
		if i%2 == 0 {
			kept[rel] = sums[rel]
			continue
		}
		if err := os.Remove(filepath.Join(mnt, rel)); err != nil {
			t.Fatal(err)
		}
	}
	m.Stop(t)
	out := harness.Run(t, "compact", "--json", store)
	var res struct {
		Containers int    `json:"containers"`
		Reclaimed  uint64 `json:"reclaimed_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Containers == 0 {
		t.Fatalf("packdir compact reclaimed nothing: %s %v", out, err)
	}
	half := spaceStatsOf(t, store)
	if half.ContainerBytes*10 > full.ContainerBytes*7 {
		t.Fatalf("after deleting half and compacting: %d container bytes, %d before", half.ContainerBytes, full.ContainerBytes)
	}
	harness.Run(t, "fsck", store)
	harness.Run(t, "fsck", "--rebuild", store)
	if n := countFiles(t, filepath.Join(store, "containers")); n != len(half.Containers) {
		t.Fatalf("%d container files, the index lists %d", n, len(half.Containers))
	}

	harness.Start(t, store, mnt, "--user", "tester")
	for _, rel := range rels {
		_, err := os.Stat(filepath.Join(mnt, rel))
		want, ok := kept[rel]
		switch {
		case !ok && err == nil:
			t.Fatalf("%s was deleted but is back after compaction and rebuild", rel)
		case ok && fileSum(t, filepath.Join(mnt, rel)) != want:
			t.Fatalf("%s: wrong bytes after compaction and rebuild", rel)
		}
	}
	if strings.Contains(out, "kept:") {
		t.Errorf("compaction kept containers: %s", out)
	}
}
