package backend

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Failpoints stop the process at a named point of a write path, to test
// what a crash there leaves behind. They are off unless the environment
// variable PACKDIR_FAILPOINT names one or more of them (comma-separated)
// when the process starts; production never sets it. "name@N" fires on
// the Nth time the point is passed (default: the first), so that a test
// can let a store be set up before the crash. A failpoint that fires
// prints its name to stderr and exits with status FailpointExit, without
// closing or flushing anything, as kill -9 would.
//
// The points are the package-level fp* variables; FORMAT.md's
// write-ordering section says what each one tests.
const FailpointExit = 86

// The write-path failpoints, in the order a commit passes them.
var (
	// fpAppendBeforeIndex: a record is written to the active container,
	// the index transaction that applies it is not committed.
	fpAppendBeforeIndex = registerFailpoint("append-before-index")
	// fpIndexBeforeSync: the index transaction is committed (not synced:
	// bbolt runs with NoSync), the container is not yet fsynced.
	fpIndexBeforeSync = registerFailpoint("index-before-sync")
	// fpSyncBeforeAck: the container is fsynced, the waiters for it
	// (deliveries) have not been told.
	fpSyncBeforeAck = registerFailpoint("sync-before-ack")
	// fpCommitBeforeOp: a delivery's payload record is written, its
	// commit op record is not.
	fpCommitBeforeOp = registerFailpoint("commit-payload-before-op")
	// fpSealBeforeSync: the seal record is written, not fsynced.
	fpSealBeforeSync = registerFailpoint("seal-before-sync")
	// fpSealBeforeNext: the sealed container is fsynced, the next one
	// does not exist yet.
	fpSealBeforeNext = registerFailpoint("seal-before-next")
	// fpNextBeforeHeader: the next container's file is created, its
	// header is not written.
	fpNextBeforeHeader = registerFailpoint("next-before-header")
	// fpSealBeforeIndex: the next container exists, durably, the index
	// transaction that makes it active is not committed.
	fpSealBeforeIndex = registerFailpoint("seal-before-index")
	// fpSpoolBeforeRemove: an op that drops a spool file is durable, its
	// spool file is not removed yet.
	fpSpoolBeforeRemove = registerFailpoint("spool-before-remove")
	// fpSpoolAfterRemove: one dropped spool file was removed, the next
	// ones are not.
	fpSpoolAfterRemove = registerFailpoint("spool-after-remove")
	// fpCowBeforeOp: a sealed message was copied to the spool for
	// writing, the spool op that makes the copy authoritative is not
	// written.
	fpCowBeforeOp = registerFailpoint("cow-before-op")
	// fpReplayBatch: recovery committed one batch of replayed records to
	// the index and stops before the next.
	fpReplayBatch = registerFailpoint("replay-batch")
)

// failpointNames lists every failpoint, so that a misspelt name in
// PACKDIR_FAILPOINT is an error rather than a test that never fires.
var failpointNames = map[string]bool{}

// enabledFailpoints is parsed from PACKDIR_FAILPOINT once, at start: each
// named point and the hit on which it fires.
var enabledFailpoints = parseFailpoints(os.Getenv("PACKDIR_FAILPOINT"))

var failpointHits struct {
	sync.Mutex
	n map[string]int
}

func parseFailpoints(s string) map[string]int {
	if s == "" {
		return nil
	}
	m := map[string]int{}
	for _, spec := range strings.Split(s, ",") {
		name, nth, _ := strings.Cut(strings.TrimSpace(spec), "@")
		n, err := strconv.Atoi(nth)
		if err != nil || n < 1 {
			n = 1
		}
		m[name] = n
	}
	return m
}

// registerFailpoint declares a failpoint name; call it from a package-level
// var so that CheckFailpoints knows every name.
func registerFailpoint(name string) string {
	failpointNames[name] = true
	return name
}

// CheckFailpoints reports a name in PACKDIR_FAILPOINT that no failpoint has.
func CheckFailpoints() error {
	for name := range enabledFailpoints {
		if !failpointNames[name] {
			return fmt.Errorf("backend: PACKDIR_FAILPOINT names %q, which is no failpoint", name)
		}
	}
	return nil
}

// failpoint exits the process at once if PACKDIR_FAILPOINT names name and
// this is the hit it asks for.
func failpoint(name string) {
	nth, ok := enabledFailpoints[name]
	if !ok {
		return
	}
	failpointHits.Lock()
	if failpointHits.n == nil {
		failpointHits.n = map[string]int{}
	}
	failpointHits.n[name]++
	hit := failpointHits.n[name]
	failpointHits.Unlock()
	if hit != nth {
		return
	}
	fmt.Fprintf(os.Stderr, "backend: failpoint %s\n", name)
	os.Exit(FailpointExit)
}
