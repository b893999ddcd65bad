package backend

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestIndexPagesFilled delivers into one folder, as an MDA does, and
// checks that the inodes and dirents buckets fill their leaf pages as
// well as their keys allow: inode numbers grow, so their pages fill; a
// split half full would stay half empty, and a scan of a large folder
// would read and map twice the pages. Dirents land at random places
// (by cookie), where pages split in half fill to about ln 2, and pages
// split unevenly stay far emptier (see direntsFill).
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
		for b, want := range map[string]float64{string(bucketInodes): 0.8, string(bucketDirents): 0.6} {
			st := tx.Bucket([]byte(b)).Stats()
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < want {
				t.Errorf("bucket %s: leaf pages %.0f%% full (%d pages for %d keys), want at least %.0f%%",
					b, 100*fill, st.LeafPageN, st.KeyN, 100*want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
