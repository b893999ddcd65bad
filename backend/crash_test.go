package backend

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/packdir/packdir/backend/record"
)

// The failpoint tests run a workload in a child process (this test binary,
// re-executed with PACKDIR_FAILPOINT set) that dies at the failpoint, then
// reopen the store, let it recover, and check it: consistent (Check), and
// holding every change the child acknowledged. The child prints
//
//	begin put|move|gone|link ARGS   before each change
//	ack                             once the change returned (durable)
//	synced CONTAINER SIZE           the container's length at that moment
//
// so that the parent knows what was acknowledged, what was in flight (it
// may or may not have happened) and what a power loss could not have
// taken away.

const (
	childStoreEnv = "PACKDIR_FAILPOINT_STORE"
	childMessages = 90
)

// TestFailpointChild is the child's workload; it does nothing in a
// normal test run.
func TestFailpointChild(t *testing.T) {
	dir := os.Getenv(childStoreEnv)
	if dir == "" {
		t.Skip("runs only as the child of a failpoint test")
	}
	s, err := Open(dir, Options{Logger: TestOptions().Logger, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	w := &childWorkload{t: t, s: s}
	w.run()
	must(t, s.Close())
}

type childWorkload struct {
	t        *testing.T
	s        *Store
	tmp, cur uint64
	names    []string // live names in cur, in delivery order
}

func (w *childWorkload) run() {
	u, err := w.s.User("crash")
	must(w.t, err)
	w.tmp, w.cur = lookup(w.t, w.s, u.Ino, "tmp"), lookup(w.t, w.s, u.Ino, "cur")
	for i := 0; i < childMessages; i++ {
		w.deliver(i)
		switch {
		case i%7 == 6:
			w.rewrite(w.names[len(w.names)/2])
		case i%5 == 4:
			w.unlink(w.names[0])
		case i%4 == 3:
			w.link(w.names[len(w.names)-1])
		case i%3 == 2:
			w.flag(len(w.names) - 2)
		}
	}
}

// childBody is message i: 1 to 9 KiB, so that a 64 KiB container seals
// every few messages.
func childBody(i int, variant string) []byte {
	rng := rand.New(rand.NewSource(int64(i)))
	return []byte(fmt.Sprintf("Subject: message %d%s\n\n%s\n", i, variant, bytes.Repeat([]byte{byte('a' + i%26)}, 1024+rng.Intn(8192))))
}

func (w *childWorkload) begin(format string, args ...any) {
	fmt.Printf("begin "+format+"\n", args...)
}

// ack prints the acknowledgement and the length of the last container,
// all of which is fsynced: ops are durable on return (SyncAlways) and
// this workload is the store's only writer.
func (w *childWorkload) ack() {
	w.s.mu.Lock()
	n, size := w.s.active.num, w.s.active.size
	w.s.mu.Unlock()
	fmt.Printf("ack\nsynced %d %d\n", n, size)
}

func (w *childWorkload) deliver(i int) {
	name := fmt.Sprintf("%d.M%d.host", 1700000000+i, i)
	data := childBody(i, "")
	w.begin("put %s %x", name, sha256.Sum256(data))
	a, err := w.s.Create(w.tmp, name, 0o600, 1000, 1000)
	must(w.t, err)
	w.writeSpool(a.Ino, data)
	must(w.t, w.s.Commit(a.Ino))
	must(w.t, w.s.Rename(w.tmp, name, w.cur, name, 0))
	w.ack()
	w.names = append(w.names, name)
}

func (w *childWorkload) writeSpool(ino uint64, data []byte) {
	f, err := w.s.OpenSpool(ino, os.O_RDWR)
	must(w.t, err)
	must(w.t, f.Truncate(0))
	_, err = f.WriteAt(data, 0)
	must(w.t, err)
	must(w.t, f.Sync())
	must(w.t, f.Close())
}

// rewrite changes a delivered message in place: copy-on-write to the
// spool, new bytes, commit.
func (w *childWorkload) rewrite(name string) {
	ino := lookup(w.t, w.s, w.cur, name)
	data := childBody(len(name)+int(ino), " (edited)")
	w.begin("put %s %x", name, sha256.Sum256(data))
	must(w.t, w.s.Spool(ino, false))
	w.writeSpool(ino, data)
	must(w.t, w.s.Commit(ino))
	w.ack()
}

func (w *childWorkload) unlink(name string) {
	w.begin("gone %s", name)
	must(w.t, w.s.Unlink(w.cur, name))
	w.ack()
	w.names = w.names[1:]
}

func (w *childWorkload) link(name string) {
	ino := lookup(w.t, w.s, w.cur, name)
	w.begin("link %s %s.copy", name, name)
	_, err := w.s.Link(ino, w.cur, name+".copy")
	must(w.t, err)
	w.ack()
}

func (w *childWorkload) flag(i int) {
	old := w.names[i]
	if strings.Contains(old, ":2,") {
		return
	}
	w.names[i] = old + ":2,S"
	w.begin("move %s %s", old, w.names[i])
	must(w.t, w.s.Rename(w.cur, old, w.cur, w.names[i], 0))
	w.ack()
}

// childRun is what the parent learned from a child: the state it
// acknowledged, the op in flight, and how much of each container was
// fsynced.
type childRun struct {
	acked    map[string]string // name in cur -> sha256 of its bytes
	inFlight string            // the begin line without an ack, or ""
	synced   map[uint32]int64
	setup    int64 // length of container 1 when the store was set up and closed
	stderr   string
}

// runChild runs the workload on store dir with PACKDIR_FAILPOINT=fp and
// expects it to die there.
func runChild(t *testing.T, dir, fp string) *childRun {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "containers", "00000001.pack"))
	must(t, err)
	setup := fi.Size()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailpointChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childStoreEnv+"="+dir, "PACKDIR_FAILPOINT="+fp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != FailpointExit {
		t.Fatalf("child with PACKDIR_FAILPOINT=%s: %v, want exit %d\nstdout:\n%s\nstderr:\n%s", fp, err, FailpointExit, tail(stdout.String()), stderr.String())
	}
	name, _, _ := strings.Cut(fp, "@")
	if !strings.Contains(stderr.String(), "backend: failpoint "+name+"\n") {
		t.Fatalf("child exited %d without naming failpoint %s:\n%s", FailpointExit, name, stderr.String())
	}
	r := parseChild(t, stdout.String(), stderr.String())
	r.setup = setup
	return r
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

func parseChild(t *testing.T, out, stderr string) *childRun {
	t.Helper()
	r := &childRun{acked: map[string]string{}, synced: map[uint32]int64{}, stderr: stderr}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch f := strings.Fields(line); {
		case len(f) > 1 && f[0] == "begin":
			r.inFlight = strings.TrimPrefix(line, "begin ")
		case line == "ack":
			applyChildOp(r.acked, r.inFlight)
			r.inFlight = ""
		case len(f) == 3 && f[0] == "synced":
			n, _ := strconv.ParseUint(f[1], 10, 32)
			size, _ := strconv.ParseInt(f[2], 10, 64)
			r.synced[uint32(n)] = size
		}
	}
	return r
}

// applyChildOp applies a begin line's change to a model of cur/.
func applyChildOp(state map[string]string, op string) {
	f := strings.Fields(op)
	if len(f) < 2 {
		return
	}
	switch f[0] {
	case "put":
		state[f[1]] = f[2]
	case "gone":
		delete(state, f[1])
	case "move":
		state[f[2]] = state[f[1]]
		delete(state, f[1])
	case "link":
		state[f[2]] = state[f[1]]
	}
}

// curState reads cur/ of the recovered store: name -> sha256 of the bytes.
func curState(t *testing.T, s *Store) map[string]string {
	t.Helper()
	u, err := s.User("crash")
	must(t, err)
	cur := lookup(t, s, u.Ino, "cur")
	ents, err := s.ReadDir(cur, DirPos{}, 1<<20)
	must(t, err)
	out := map[string]string{}
	for _, e := range ents {
		a, err := s.Getattr(e.Ino)
		must(t, err)
		var data []byte
		if a.Sealed {
			data = readMessage(t, s, e.Ino)
		} else {
			data, err = os.ReadFile(s.spoolPath(e.Ino))
			must(t, err)
		}
		out[e.Name] = fmt.Sprintf("%x", sha256.Sum256(data))
	}
	return out
}

// checkRecovered opens the store (recovering it), checks it and compares
// cur/ with what the child acknowledged, allowing the op in flight to have
// happened or not.
func checkRecovered(t *testing.T, dir string, r *childRun) {
	t.Helper()
	var logBuf bytes.Buffer
	s, err := Open(dir, Options{Logger: bufLogger(&logBuf)})
	if err != nil {
		t.Fatalf("recovery failed: %v\nchild stderr:\n%s", err, r.stderr)
	}
	got := curState(t, s)
	must(t, s.Close())
	CheckStore(t, dir)
	after := map[string]string{}
	for k, v := range r.acked {
		after[k] = v
	}
	applyChildOp(after, r.inFlight)
	if !sameState(got, r.acked) && !sameState(got, after) {
		t.Fatalf("after recovery cur/ holds\n%s\nwant the acknowledged state\n%s\nor with %q applied.\nrecovery log:\n%s",
			showState(got), showState(r.acked), r.inFlight, logBuf.String())
	}
}

func sameState(a, b map[string]string) bool { return showState(a) == showState(b) }

func showState(m map[string]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, k+" "+v[:12])
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// newCrashStore makes a store with small containers and user crash's
// tmp/ and cur/, closed.
func newCrashStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, Init(dir, Config{ContainerSize: 64 << 10}))
	s, err := Open(dir, TestOptions())
	must(t, err)
	u, err := s.AddUser("crash", 1000, 1000)
	must(t, err)
	mkdir(t, s, u.Ino, "tmp")
	mkdir(t, s, u.Ino, "cur")
	must(t, s.Close())
	return dir
}

// writePathFailpoints are the points a delivery workload passes, each
// tried at an early and a late hit.
var writePathFailpoints = []string{
	fpAppendBeforeIndex, fpIndexBeforeSync, fpSyncBeforeAck, fpCommitBeforeOp,
	fpSealBeforeSync, fpSealBeforeNext, fpNextBeforeHeader, fpSealBeforeIndex,
	fpSpoolBeforeRemove, fpSpoolAfterRemove, fpCowBeforeOp,
}

// TestFailpointsProcessCrash: the process dies at each failpoint with the
// page cache intact (as kill -9 leaves it); reopening recovers every
// acknowledged change.
func TestFailpointsProcessCrash(t *testing.T) {
	for _, fp := range writePathFailpoints {
		for _, hit := range []int{1, 5} {
			spec := fmt.Sprintf("%s@%d", fp, hit)
			t.Run(spec, func(t *testing.T) {
				dir := newCrashStore(t)
				checkRecovered(t, dir, runChild(t, dir, spec))
			})
		}
	}
}

// TestFailpointsPowerLoss: the machine dies at each failpoint. What was
// not fsynced may be lost: each container is cut back to a random length
// between what the child saw fsynced and what it wrote, and the state
// file says the store was open in another boot, so Open rebuilds the
// index from the containers. Every acknowledged change must survive.
func TestFailpointsPowerLoss(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, fp := range writePathFailpoints {
		for _, hit := range []int{1, 5} {
			spec := fmt.Sprintf("%s@%d", fp, hit)
			seed := rng.Int63()
			t.Run(spec, func(t *testing.T) {
				dir := newCrashStore(t)
				r := runChild(t, dir, spec)
				loseUnsynced(t, dir, r, rand.New(rand.NewSource(seed)))
				checkRecovered(t, dir, r)
			})
		}
	}
}

// loseUnsynced does to dir what a power loss could: the last container
// loses a random part of what was written after its last known fsync, and
// the machine has rebooted. Earlier containers are whole: a container is
// fsynced with its seal record before the next one is created.
func loseUnsynced(t *testing.T, dir string, r *childRun, rng *rand.Rand) {
	t.Helper()
	last, n := lastContainer(t, dir)
	fi, err := os.Stat(last)
	must(t, err)
	synced, ok := r.synced[n]
	if !ok {
		// Created after the last ack: its header is fsynced, unless the
		// process died before writing it.
		synced = min(record.HeaderSize, fi.Size())
	}
	if n == 1 && synced < r.setup {
		synced = r.setup
	}
	if synced > fi.Size() {
		t.Fatalf("container %d is %d bytes, the child saw %d fsynced", n, fi.Size(), synced)
	}
	cut := synced + rng.Int63n(fi.Size()-synced+1)
	t.Logf("power loss: container %d cut from %d to %d bytes (%d fsynced)", n, fi.Size(), cut, synced)
	must(t, os.Truncate(last, cut))
	must(t, writeState(dir, state{dirty: true, pid: 1, bootID: "an-earlier-boot"}))
}

// lastContainer returns the path and number of the newest container file
// in store dir.
func lastContainer(t *testing.T, dir string) (string, uint32) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "containers", "*.pack"))
	must(t, err)
	sort.Strings(paths)
	last := paths[len(paths)-1]
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(last), ".pack"), 10, 32)
	must(t, err)
	return last, uint32(n)
}

// bufLogger logs text lines into buf.
func bufLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, nil))
}

// TestFailpointDuringRecovery: the machine restarts after a crash, and
// the process dies again while rebuilding the index from the journal
// (after the first container's records are applied). The next open
// continues from where the interrupted one stopped.
func TestFailpointDuringRecovery(t *testing.T) {
	for _, hit := range []int{1, 3} {
		t.Run(fmt.Sprint(hit), func(t *testing.T) {
			dir := newCrashStore(t)
			r := runChild(t, dir, fpSealBeforeIndex+"@5")
			must(t, writeState(dir, state{dirty: true, pid: 1, bootID: "an-earlier-boot"}))
			runChild(t, dir, fmt.Sprintf("%s@%d", fpReplayBatch, hit))
			checkRecovered(t, dir, r)
		})
	}
}

// TestNextContainerHeaderTorn: the process died after creating the next
// container and before its header was whole, as a power loss can leave
// it: empty, a beginning of the header, or zeros. Recovery writes the
// header and goes on. Anything else in place of the header is damage,
// reported with the container and offset, and the file is left alone.
func TestNextContainerHeaderTorn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content func(want []byte) []byte
		damaged bool
	}{
		{"empty", func([]byte) []byte { return nil }, false},
		{"prefix", func(want []byte) []byte { return want[:17] }, false},
		{"zeros", func(want []byte) []byte { return make([]byte, len(want)) }, false},
		{"garbage", func(want []byte) []byte { return bytes.Repeat([]byte{0xff}, len(want)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newCrashStore(t)
			r := runChild(t, dir, fpNextBeforeHeader+"@3")
			last, n := lastContainer(t, dir)
			cfg, err := readConfig(dir)
			must(t, err)
			var id [16]byte
			_, err = hex.Decode(id[:], []byte(cfg.StoreID))
			must(t, err)
			content := tc.content(record.ContainerHeader{Number: n, StoreID: id}.Encode())
			must(t, os.WriteFile(last, content, 0o600))
			if !tc.damaged {
				checkRecovered(t, dir, r)
				return
			}
			_, err = Open(dir, TestOptions())
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Container != n || ce.Offset != 0 {
				t.Fatalf("open with a garbled header in container %d: %v, want a CorruptError at its offset 0", n, err)
			}
			if b, _ := os.ReadFile(last); !bytes.Equal(b, content) {
				t.Errorf("container %d was changed: %x, was %x", n, b, content)
			}
		})
	}
}
