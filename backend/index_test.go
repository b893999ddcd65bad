package backend

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestIndexPagesFilled delivers into one folder, as an MDA does, and
// checks that the inodes and dirents buckets fill their leaf pages:
// split half full they stay half empty, and a scan of a large folder
// reads and maps twice the pages.
func TestIndexPagesFilled(t *testing.T) {
	s := TestStore(t, Config{})
	tmp := mkdir(t, s, RootIno, "tmp")
	cur := mkdir(t, s, RootIno, "cur")
	for i := 0; i < 3000; i++ {
		name := fmt.Sprintf("17%08d.M%dP1234.host.example.org", i, i)
		deliver(t, s, tmp, name, []byte(fmt.Sprintf("Subject: %d\n\n", i)))
		if err := s.Rename(tmp, name, cur, name+":2,", 0); err != nil {
			t.Fatal(err)
		}
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketInodes, bucketDirents} {
			st := tx.Bucket(b).Stats()
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.8 {
				t.Errorf("bucket %s: leaf pages %.0f%% full (%d pages for %d keys), want at least 80%%",
					b, 100*fill, st.LeafPageN, st.KeyN)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
