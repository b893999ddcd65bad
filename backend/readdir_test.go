package backend

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestReadDirCookies: a listing read page by page, each page resumed
// from the last entry's place, lists every entry once, whatever the page
// size, also where names share a cookie; a page never ends between two
// entries of one cookie; a place without a name resumes after every
// entry of its cookie.
func TestReadDirCookies(t *testing.T) {
	s := TestStore(t, Config{})
	u, err := s.AddUser("carol", 1000, 1000)
	must(t, err)
	cur := mkdir(t, s, u.Ino, "cur")
	for i := range 20 {
		deliver(t, s, cur, fmt.Sprintf("%d.M%d.host:2,S", 1700000000+i, i), []byte("Subject: x\n\nx\n"))
	}
	all, err := s.ReadDir(cur, DirPos{}, 1000)
	must(t, err)
	// Names of one cookie cannot be found by hashing; file three under
	// the cookie between the 10th and 11th entries' (lookups miss them,
	// so they are taken out again before the store is checked).
	shared := all[9].Cookie + (all[10].Cookie-all[9].Cookie)/2
	twins := []string{"twin-a", "twin-b", "twin-c"}
	setTwins := func(put bool) {
		must(t, s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDirents)
			for _, n := range twins {
				k := direntKey(cur, shared, n)
				if !put {
					must(t, b.Delete(k))
					continue
				}
				must(t, b.Put(k, encodeDirent(dirent{Ino: all[0].Ino, Mode: ModeRegular})))
			}
			return nil
		}))
	}
	setTwins(true)
	defer setTwins(false)
	want := len(all) + len(twins)

	for page := 1; page <= want+1; page++ {
		seen := map[string]int{}
		var after DirPos
		var last uint64
		for {
			ents, err := s.ReadDir(cur, after, page)
			must(t, err)
			if len(ents) == 0 {
				break
			}
			if ents[0].Cookie == last {
				t.Errorf("page size %d: a page ends between two entries of cookie %d", page, last)
			}
			for i, e := range ents {
				seen[e.Name]++
				if i > 0 && e.Cookie < ents[i-1].Cookie {
					t.Errorf("page size %d: cookie %d after %d", page, e.Cookie, ents[i-1].Cookie)
				}
			}
			after, last = ents[len(ents)-1].Pos(), ents[len(ents)-1].Cookie
		}
		if len(seen) != want {
			t.Errorf("page size %d: %d names listed, want %d", page, len(seen), want)
		}
		for n, c := range seen {
			if c != 1 {
				t.Errorf("page size %d: %s listed %d times", page, n, c)
			}
		}
	}

	first := func(after DirPos) string {
		ents, err := s.ReadDir(cur, after, 1)
		must(t, err)
		if len(ents) == 0 {
			return ""
		}
		return ents[0].Name
	}
	for _, c := range []struct {
		after DirPos
		want  string
	}{
		{DirPos{Cookie: shared - 1}, "twin-a"},
		{DirPos{Cookie: shared, Name: "twin-a"}, "twin-b"},
		{DirPos{Cookie: shared, Name: "twin-b"}, "twin-c"},
		{DirPos{Cookie: shared}, all[10].Name},
		{DirPos{Cookie: all[9].Cookie}, "twin-a"},
		{DirPos{Cookie: MaxCookie}, ""},
		{DirPos{Cookie: 1<<64 - 1}, ""},
	} {
		if got := first(c.after); got != c.want {
			t.Errorf("first entry after %+v: %q, want %q", c.after, got, c.want)
		}
	}
	must(t, s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDirents).Delete(direntKey(cur, shared, "twin-b")) }))
	if got := first(DirPos{Cookie: shared, Name: "twin-b"}); got != "twin-c" {
		t.Errorf("first entry after twin-b, once twin-b is gone: %q, want twin-c", got)
	}
}
