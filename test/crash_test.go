package test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestKillUnderLoad SIGKILLs the daemon at a random moment while parallel
// writers deliver (by rename and by link+unlink), change flags, move
// messages to .Trash and delete them, then remounts, which must recover by
// itself, and checks the tree against a ledger of every operation that
// returned: every acknowledged delivery is there under its latest name,
// byte for byte, nothing deleted comes back, no file in new/ or cur/ holds
// anything but a whole delivered message, and fsck finds nothing wrong.
// An operation in flight at the kill may or may not have happened.
//
// PACKDIR_CRASH_ROUNDS sets the number of rounds (default 20),
// PACKDIR_CRASH_SEED the seed (default: the time, printed).
func TestKillUnderLoad(t *testing.T) {
	harness.RequireFuse(t)
	rounds := envInt(t, "PACKDIR_CRASH_ROUNDS", 20)
	seed := int64(envInt(t, "PACKDIR_CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("seed %d, %d rounds (PACKDIR_CRASH_SEED=%d to repeat)", seed, rounds, seed)
	rng := rand.New(rand.NewSource(seed))

	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", "--container-size", "256KiB", store) // seals under load too
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	l := &ledger{msgs: map[[32]byte]*crashMsg{}, gone: map[[32]byte]bool{}}
	for round := 0; round < rounds && !t.Failed(); round++ {
		crashRound(t, m, l, round, rng)
		if round%4 == 3 {
			simulateReboot(t, store) // the mount rebuilds the index from the containers
		}
		m.Restart(t) // recovers by itself after the kill
		if round%4 == 3 && !strings.Contains(m.Output(), "rebuilding the index from the containers") {
			t.Errorf("round %d: after a simulated reboot the mount did not rebuild the index:\n%s", round, m.Output())
		}
		l.verify(t, mnt, round)
		if round%5 == 4 || round == rounds-1 {
			m.Stop(t)
			harness.Run(t, "fsck", store)
			m.Restart(t)
		}
	}
	t.Logf("acknowledged: %d deliveries, %d deletions; %d operations in flight at a kill", l.delivered, l.deleted, l.inflight)
}

// simulateReboot makes the store's state file say that it was open in an
// earlier boot of the machine, as after a power loss: the next open
// rebuilds the index from the containers (which, the page cache being
// intact, hold everything written).
func simulateReboot(t *testing.T, store string) {
	t.Helper()
	mustDo(t, os.WriteFile(filepath.Join(store, "state"), []byte("open 1 an-earlier-boot\n"), 0o644))
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// crashRound runs writers on the mount and SIGKILLs the daemon after a
// random delay.
func crashRound(t *testing.T, m *harness.Mount, l *ledger, round int, rng *rand.Rand) {
	const writers = 4
	var killed atomic.Bool
	var wg sync.WaitGroup
	live := l.live()
	for w := 0; w < writers; w++ {
		cw := &crashWriter{mnt: m.Dir, l: l, killed: &killed, rng: rand.New(rand.NewSource(rng.Int63())),
			prefix: fmt.Sprintf("%d.R%dW%d", 1700000000+round, round, w)}
		for i := w; i < len(live); i += writers {
			cw.live = append(cw.live, live[i]) // earlier rounds' messages change too
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cw.run(t)
		}()
	}
	time.Sleep(time.Duration(50+rng.Intn(400)) * time.Millisecond)
	killed.Store(true)
	m.Kill(t)
	wg.Wait()
}

// crashMsg is one delivered (or being delivered) message. at is the path
// under the mount where the last acknowledged operation left it ("" if
// not delivered or deleted); maybe is where an operation in flight at the
// kill would have put it ("" for a deletion).
type crashMsg struct {
	sum      [32]byte
	at       string
	maybe    string
	inFlight bool
}

type ledger struct {
	mu                           sync.Mutex
	msgs                         map[[32]byte]*crashMsg
	gone                         map[[32]byte]bool // deleted: must not come back
	delivered, deleted, inflight int
}

// crashWriter does one operation at a time on its own messages, so that
// it has at most one in flight when the daemon dies.
type crashWriter struct {
	mnt, prefix string
	l           *ledger
	killed      *atomic.Bool
	rng         *rand.Rand
	n           int
	live        []*crashMsg
}

func (w *crashWriter) run(t *testing.T) {
	for !w.killed.Load() {
		var err error
		if len(w.live) == 0 || w.rng.Intn(2) == 0 {
			err = w.deliver()
		} else {
			err = w.change()
		}
		if err != nil {
			if !w.killed.Load() {
				t.Errorf("before the kill: %v", err)
			}
			return
		}
	}
}

// op runs fn as the in-flight operation that would move msg to target:
// the ledger says "maybe target" until fn returns, then "at target".
func (w *crashWriter) op(msg *crashMsg, target string, fn func() error) error {
	w.l.mu.Lock()
	msg.maybe, msg.inFlight = target, true
	w.l.mu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	w.l.mu.Lock()
	switch {
	case msg.at == "":
		w.l.delivered++
	case target == "":
		w.l.deleted++
	}
	msg.at, msg.maybe, msg.inFlight = target, "", false
	w.l.mu.Unlock()
	return nil
}

func (w *crashWriter) deliver() error {
	w.n++
	name := fmt.Sprintf("%s.N%d.crash", w.prefix, w.n)
	body := fmt.Sprintf("From: crash@example.org\nSubject: %s\n\n%s\n", name,
		strings.Repeat(fmt.Sprintf("line of %s\n", name), w.rng.Intn(400)))
	msg := &crashMsg{sum: sha256.Sum256([]byte(body))}
	w.l.mu.Lock()
	w.l.msgs[msg.sum] = msg
	w.l.mu.Unlock()
	tmp := filepath.Join(w.mnt, "tmp", name)
	if err := writeSynced(tmp, body); err != nil {
		return err
	}
	target := "new/" + name
	dst := filepath.Join(w.mnt, target)
	var err error
	if w.n%2 == 0 {
		err = w.op(msg, target, func() error { return os.Rename(tmp, dst) })
	} else {
		err = w.op(msg, target, func() error { return os.Link(tmp, dst) })
		if err == nil {
			err = os.Remove(tmp)
		}
	}
	if msg.at != "" {
		w.live = append(w.live, msg)
	}
	return err
}

func writeSynced(path, body string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// change renames (a flag change or a move to .Trash) or deletes one of
// the writer's live messages.
func (w *crashWriter) change() error {
	i := w.rng.Intn(len(w.live))
	msg := w.live[i]
	from := msg.at
	to := nextName(from, w.rng.Intn(4))
	if to == "" {
		w.live = append(w.live[:i], w.live[i+1:]...)
		return w.op(msg, "", func() error { return os.Remove(filepath.Join(w.mnt, from)) })
	}
	return w.op(msg, to, func() error { return os.Rename(filepath.Join(w.mnt, from), filepath.Join(w.mnt, to)) })
}

// nextName is where a message at path goes next: "" means deleted.
func nextName(path string, dice int) string {
	dir, name := filepath.Split(path)
	base, _, _ := strings.Cut(name, ":2,")
	switch {
	case dice == 0:
		return ""
	case dir == "new/":
		return "cur/" + base + ":2,S"
	case dice == 1 && dir == "cur/":
		return ".Trash/cur/" + name
	case strings.HasSuffix(name, ":2,S"):
		return dir + base + ":2,FS"
	}
	return dir + base + ":2,S"
}

// verify walks new/ and cur/ of every folder, matches each file to a
// message by its hash, checks it against the ledger and then resolves the
// operations that were in flight to what the tree shows.
func (l *ledger) verify(t *testing.T, mnt string, round int) {
	t.Helper()
	found := messageFiles(t, mnt)
	for sum, paths := range found {
		msg := l.msgs[sum]
		if msg == nil && l.gone[sum] {
			t.Errorf("round %d: %s holds a message deleted before (sha256 %x): it came back", round, paths, sum[:8])
			continue
		}
		if msg == nil {
			t.Errorf("round %d: %s holds bytes of no delivered message (sha256 %x): a partial message", round, paths, sum[:8])
			continue
		}
		if len(paths) > 1 {
			t.Errorf("round %d: message %s is at several names %q", round, msg.at, paths)
		}
	}
	for sum, msg := range l.msgs {
		got := ""
		if p := found[sum]; len(p) > 0 {
			got = p[0]
		}
		if got != msg.at && !(msg.inFlight && got == msg.maybe) {
			t.Errorf("round %d: message acknowledged at %q (in flight to %q: %v) is at %q", round, msg.at, msg.maybe, msg.inFlight, got)
		}
		l.resolve(msg, got)
	}
}

// live returns the messages that are in the tree, in path order.
func (l *ledger) live() []*crashMsg {
	var out []*crashMsg
	for _, msg := range l.msgs {
		if msg.at != "" {
			out = append(out, msg)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

func (l *ledger) resolve(msg *crashMsg, got string) {
	if msg.inFlight {
		l.inflight++
	}
	msg.at, msg.maybe, msg.inFlight = got, "", false
	if got == "" {
		delete(l.msgs, msg.sum) // deleted, or never delivered: its bytes must not appear
		l.gone[msg.sum] = true
	}
}

// messageFiles returns the path (relative to mnt) of every file in a new/
// or cur/ directory, by the sha256 of its bytes.
func messageFiles(t *testing.T, mnt string) map[[32]byte][]string {
	t.Helper()
	found := map[[32]byte][]string{}
	err := filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(mnt, path)
		if dir := filepath.Base(filepath.Dir(rel)); dir != "new" && dir != "cur" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		sum := sha256.Sum256(b)
		found[sum] = append(found[sum], rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walking the mount after recovery: %v", err)
	}
	for _, p := range found {
		sort.Strings(p)
	}
	return found
}
