package backend

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// verifyIndexFile reads every page of index.db in a read-only transaction
// before the store opens it for writing. bbolt trusts its file: a damaged
// page makes it panic, and a truncated file makes it fault, and when it
// opens for writing it walks every page (to rebuild the freelist, which
// we do not sync) in a goroutine of its own, where nothing can recover
// either. Here the same walk runs where a panic or a fault is caught and
// becomes an error, so that a damaged index is a one-line message
// pointing to 'packdir fsck --rebuild' rather than a crash.
func verifyIndexFile(path string) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // no index yet: bbolt creates it
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	defer db.Close()
	errc := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true) // a page past the end of the file faults
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("%v", r)
			}
		}()
		errc <- db.View(checkIndexTx)
	}()
	return <-errc
}

// checkIndexTx reads every page itself first, where a damaged page panics
// in this goroutine, and only then runs bbolt's own check (key order,
// page references), which runs in a goroutine of its own.
func checkIndexTx(tx *bolt.Tx) error {
	if err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walkBucket(b) }); err != nil {
		return err
	}
	var first error
	for err := range tx.Check() { // drained: the checker reads tx until it ends
		if first == nil {
			first = err
		}
	}
	return first
}

// walkBucket visits every key of b and of the buckets nested in it, which
// reads every page they are stored in.
func walkBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				return walkBucket(nested)
			}
		}
		return nil
	})
}
