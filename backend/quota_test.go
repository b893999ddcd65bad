package backend

import (
	"errors"
	"testing"
)

// TestQuotaJournaled: quotas and usage come back after a rebuild from the
// containers, before and after compaction replaced old ops by a
// checkpoint; a commit past the quota is refused with ErrQuota and leaves
// nothing in the journal.
func TestQuotaJournaled(t *testing.T) {
	s := TestStore(t, Config{ContainerSize: 64 << 10})
	fill(t, s)
	churn(t, s, ".Lists", 300, 1500, 30) // 10 kept
	must(t, s.SetQuota(1000, Quota{Bytes: 1 << 20, Messages: 100}))
	q, u, err := s.QuotaOf(1000)
	must(t, err)
	for _, step := range []string{"rebuild", "compact and rebuild"} {
		if step != "rebuild" {
			_, err := s.Compact(0)
			must(t, err)
		}
		s, _ = rebuildListing(t, s)
		q2, u2, err := s.QuotaOf(1000)
		must(t, err)
		if q2 != q || u2 != u {
			t.Fatalf("after %s: quota %+v usage %+v, want %+v %+v", step, q2, u2, q, u)
		}
	}
	must(t, s.SetQuota(1000, Quota{Messages: u.Messages}))
	a, err := s.Create(lookup(t, s, RootIno, "alice"), "over", 0o600, 1000, 1000)
	must(t, err)
	seq := s.seq
	if err := s.Commit(a.Ino); !errors.Is(err, ErrQuota) {
		t.Fatalf("commit over quota: %v, want ErrQuota", err)
	}
	if s.seq != seq {
		t.Fatalf("a refused commit journaled %d records", s.seq-seq)
	}
	must(t, s.Close())
}
