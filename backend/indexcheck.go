package backend

import (
	"bytes"
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
	if fi, err := os.Lstat(path); err != nil || fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil // no index yet: bbolt creates it
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond, OpenFile: openFile})
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

// checkIndexTx reads every page of the index, where a damaged page panics
// in this goroutine. (bbolt's Tx.Check is no help: on a file whose
// freelist is not synced it first walks the pages in goroutines of its
// own, and panics there.)
func checkIndexTx(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walkBucket(string(name), b) })
}

// walkBucket visits every key of b and of the buckets nested in it, which
// reads every page they are stored in, and checks that the keys ascend
// as bbolt requires.
func walkBucket(name string, b *bolt.Bucket) error {
	var prev []byte
	return b.ForEach(func(k, v []byte) error {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("bucket %q: key %x after %x", name, k, prev)
		}
		prev = k
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				return walkBucket(name+"/"+string(k), nested)
			}
		}
		return nil
	})
}

// openBolt is bolt.Open with a panic turned into an error: on opening a
// file for writing, bbolt walks its pages to rebuild the freelist and
// panics on what verifyIndexFile cannot see (a page reachable twice, say).
// The file stays locked by this process after such a panic; the caller
// gives up on the store.
func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return bolt.Open(path, 0o600, opts)
}
