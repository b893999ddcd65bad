package backend

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/packdir/packdir/backend/record"
)

// churn delivers n messages of about size bytes into a fresh folder and
// deletes all but every keep-th, leaving sealed containers mostly dead.
func churn(t *testing.T, s *Store, folder string, n, size, keep int) uint64 {
	t.Helper()
	u, err := s.User("alice")
	must(t, err)
	dir := mkdir(t, s, u.Ino, folder)
	for i := 0; i < n; i++ {
		deliver(t, s, dir, fmt.Sprintf("m%d", i), []byte(fmt.Sprintf("Subject: %s %d\n\n%s", folder, i, bytes.Repeat([]byte("y"), size))))
	}
	for i := 0; i < n; i++ {
		if i%keep != 0 {
			must(t, s.Unlink(dir, fmt.Sprintf("m%d", i)))
		}
	}
	must(t, s.Sync())
	return dir
}

func countContainerFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "containers"))
	must(t, err)
	return len(ents)
}

// rebuildListing closes s, rebuilds the index from the containers alone
// and returns the listing of the rebuilt store, which it leaves open.
func rebuildListing(t *testing.T, s *Store) (*Store, string) {
	t.Helper()
	dir := s.Dir()
	must(t, s.Close())
	must(t, os.Remove(filepath.Join(dir, "index.db")))
	s2, err := Open(dir, TestOptions())
	must(t, err)
	return s2, listing(t, s2)
}

func TestCompactReclaimsAndRebuildStillWorks(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10})
	fill(t, s)
	churn(t, s, ".Lists", 300, 1500, 10)
	before, files := listing(t, s), countContainerFiles(t, s.Dir())
	st, _ := s.Stats()
	res, err := s.Compact(0)
	must(t, err)
	if res.Containers == 0 || res.Reclaimed == 0 {
		t.Fatalf("compaction reclaimed nothing: %+v (stats before: %d dead of %d)", res, st.DeadBytes, st.ContainerBytes)
	}
	if got := countContainerFiles(t, s.Dir()); got >= files {
		t.Fatalf("%d container files after deleting %d of %d", got, res.Containers, files)
	}
	st2, _ := s.Stats()
	if st2.ContainerBytes >= st.ContainerBytes {
		t.Fatalf("container bytes %d after compaction, %d before", st2.ContainerBytes, st.ContainerBytes)
	}
	if after := listing(t, s); after != before {
		t.Fatalf("compaction changed the tree.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	checkNow(t, s)

	// The containers compaction deleted held ops the rebuild would have
	// replayed: the checkpoint must stand in for them.
	s, rebuilt := rebuildListing(t, s)
	if rebuilt != before {
		t.Fatalf("rebuild after compaction differs.\nbefore:\n%s\nafter:\n%s", before, rebuilt)
	}
	// Later ops on top of the checkpoint, a second compaction (whose
	// checkpoint supersedes the first), and a rebuild again.
	churn(t, s, ".More", 200, 1500, 5)
	must(t, s.Unlink(lookup(t, s, lookup(t, s, RootIno, "alice"), "cur"), "1010.M10.host:2,S"))
	_, err = s.Compact(0)
	must(t, err)
	before = listing(t, s)
	s, rebuilt = rebuildListing(t, s)
	if rebuilt != before {
		t.Fatalf("rebuild after a second compaction differs.\nbefore:\n%s\nafter:\n%s", before, rebuilt)
	}
	must(t, s.Close())
}

func checkNow(t *testing.T, s *Store) {
	t.Helper()
	r, err := s.Check()
	must(t, err)
	for _, p := range r.Problems {
		t.Errorf("check: %s", p)
	}
}

// TestCompactWhileBusy compacts while readers read every kept message and
// a writer delivers and deletes: every read returns the right bytes.
func TestCompactWhileBusy(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10})
	_, err := s.AddUser("alice", 1000, 1000)
	must(t, err)
	dir := churn(t, s, ".Busy", 400, 1000, 4)
	kept := map[uint64][]byte{}
	for i := 0; i < 400; i += 4 {
		ino := lookup(t, s, dir, fmt.Sprintf("m%d", i))
		kept[ino] = readMessage(t, s, ino)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for ino, want := range kept {
					m, err := s.OpenMessage(ino)
					if err != nil || !bytes.Equal(m.Bytes(), want) {
						errs <- fmt.Errorf("read inode %d during compaction: %v", ino, err)
						return
					}
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		u, _ := s.User("alice")
		busy := mkdir(t, s, u.Ino, ".Writer")
		for i := 0; i < 100; i++ {
			a, err := s.Create(busy, fmt.Sprintf("w%d", i), 0o600, 1000, 1000)
			if err == nil {
				err = os.WriteFile(s.spoolPath(a.Ino), []byte(fmt.Sprintf("writer %d\n", i)), 0o600)
			}
			if err == nil {
				err = s.Commit(a.Ino)
			}
			if err == nil && i%2 == 0 {
				err = s.Unlink(busy, fmt.Sprintf("w%d", i))
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	res, err := s.Compact(0)
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	must(t, err)
	if res.Containers == 0 {
		t.Fatalf("nothing compacted: %+v", res)
	}
}

// TestBackgroundCompaction: a store opened with AutoCompact compacts by
// itself once a container is sealed.
func TestBackgroundCompaction(t *testing.T) {
	dir := t.TempDir()
	must(t, Init(dir, Config{ContainerSize: 64 << 10}))
	opts := TestOptions()
	opts.AutoCompact = true
	s, err := Open(dir, opts)
	must(t, err)
	_, err = s.AddUser("alice", 1000, 1000)
	must(t, err)
	churn(t, s, ".Lists", 300, 1500, 10)
	// Sealing containers kicks the compactor, which may already be at
	// work while the tree is listed: that listing must be right too.
	before := listing(t, s)
	for i := 0; ; i++ {
		st, err := s.Stats()
		must(t, err)
		if st.Containers[0].Number > 1 {
			break
		}
		if i == 1000 {
			t.Fatalf("background compaction never ran: %+v", st.Containers)
		}
		s.kickCompaction()
		s.compactMu.Lock()
		//lint:ignore SA2001 an empty critical section waits for a run in progress
		s.compactMu.Unlock()
	}
	if got := listing(t, s); got != before {
		t.Fatalf("background compaction changed the tree.\nbefore:\n%s\nafter:\n%s", before, got)
	}
	must(t, s.Close())
	CheckStore(t, dir)
}

// TestCompactCrash crashes a compaction (a child process exiting at a
// failpoint, as kill -9 would) at each of its steps. Reopening gives the
// same tree, fsck is clean (so no container file is leaked unseen), a
// rebuild from the containers gives the same tree, and compacting again
// finishes the job.
func TestCompactCrash(t *testing.T) {
	for _, fp := range []string{fpCompactCopied, fpCompactCheckpointed, fpCompactSwitched} {
		t.Run(fp, func(t *testing.T) {
			dir := t.TempDir()
			must(t, Init(dir, Config{ContainerSize: 64 << 10}))
			s, err := Open(dir, TestOptions())
			must(t, err)
			fill(t, s)
			churn(t, s, ".Lists", 300, 1500, 10)
			before := listing(t, s)
			must(t, s.Close())

			cmd := exec.Command(os.Args[0], "-test.run=^TestCompactCrashChild$")
			cmd.Env = append(os.Environ(), "PACKDIR_FAILPOINT="+fp, "PACKDIR_COMPACT_CHILD="+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != FailpointExit {
				t.Fatalf("child did not stop at %s: %v\n%s", fp, err, out)
			}

			s, err = Open(dir, TestOptions())
			must(t, err)
			if got := listing(t, s); got != before {
				t.Fatalf("tree after a crash at %s differs.\nbefore:\n%s\nafter:\n%s", fp, before, got)
			}
			checkNow(t, s)
			s, rebuilt := rebuildListing(t, s)
			if rebuilt != before {
				t.Fatalf("rebuild after a crash at %s differs.\nbefore:\n%s\nafter:\n%s", fp, before, rebuilt)
			}
			_, err = s.Compact(0)
			must(t, err)
			if got := listing(t, s); got != before {
				t.Fatalf("tree after compacting again differs.\nbefore:\n%s\nafter:\n%s", before, got)
			}
			must(t, s.Close())
			CheckStore(t, dir)
		})
	}
}

// TestCompactCrashChild is the child of TestCompactCrash: it compacts the
// store named by PACKDIR_COMPACT_CHILD and is stopped by a failpoint.
func TestCompactCrashChild(t *testing.T) {
	dir := os.Getenv("PACKDIR_COMPACT_CHILD")
	if dir == "" {
		t.Skip("run by TestCompactCrash")
	}
	s, err := Open(dir, TestOptions())
	must(t, err)
	if os.Getenv("PACKDIR_CHILD_OPEN_ONLY") != "" {
		t.Fatalf("opening passed the failpoint")
	}
	_, err = s.Compact(0)
	t.Fatalf("compaction passed the failpoint: %v", err)
}

// TestRebuildCrashAfterCompaction crashes a rebuild of the index from the
// containers after each container it replays, in a store whose oldest
// containers compaction deleted: the next open resumes the rebuild from
// the same checkpoint and gives the same tree.
func TestRebuildCrashAfterCompaction(t *testing.T) {
	dir := t.TempDir()
	must(t, Init(dir, Config{ContainerSize: 64 << 10}))
	s, err := Open(dir, TestOptions())
	must(t, err)
	fill(t, s)
	churn(t, s, ".Lists", 600, 1500, 20)
	_, err = s.Compact(0)
	must(t, err)
	before := listing(t, s)
	must(t, s.Close())
	n := countContainerFiles(t, dir)
	for i := 1; i < n; i++ {
		must(t, os.Remove(filepath.Join(dir, "index.db")))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompactCrashChild$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("PACKDIR_FAILPOINT=%s@%d", fpReplayBatch, i),
			"PACKDIR_COMPACT_CHILD="+dir, "PACKDIR_CHILD_OPEN_ONLY=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != FailpointExit {
			t.Fatalf("child did not stop after replaying container %d: %v\n%s", i, err, out)
		}
		s, err := Open(dir, TestOptions())
		if err != nil {
			t.Fatalf("open after a rebuild crashed after %d containers: %v", i, err)
		}
		if got := listing(t, s); got != before {
			t.Fatalf("rebuild crashed after %d containers and resumed: tree differs.\nbefore:\n%s\nafter:\n%s", i, before, got)
		}
		checkNow(t, s)
		must(t, s.Close())
	}
}

// TestCheckReportsLeakedContainer: a container file the index does not
// know is reported, with its size.
func TestCheckReportsLeakedContainer(t *testing.T) {
	s := TestStore(t, Config{})
	_, err := s.AddUser("alice", 1000, 1000)
	must(t, err)
	leak := filepath.Join(s.Dir(), "containers", containerName(99))
	must(t, os.WriteFile(leak, record.ContainerHeader{Number: 99, StoreID: s.storeID}.Encode(), 0o600))
	r, err := s.Check()
	must(t, err)
	if len(r.Problems) != 1 || !bytes.Contains([]byte(r.Problems[0]), []byte("container 99 is on disk but not in the index")) {
		t.Fatalf("problems %q, want the leaked container 99", r.Problems)
	}
	must(t, os.Remove(leak))
}
