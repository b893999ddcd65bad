package backend

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// Quotas limit the sealed messages a uid owns, in bytes (their original
// size) and in count, as disk quotas limit a uid's blocks and inodes. A
// user's quota is its uid's: users sharing a uid share one quota. Spooled
// files (tmp/, side files) are not counted; a commit into new/ or cur/
// that would pass a limit fails with ErrQuota, and so does a write to a
// spooled file once the uid is over (FORMAT.md, `quota` op), and a write
// that would take a file written in place in new/ or cur/ past what its
// seal would be admitted with (AdmitMessage).
//
//	usage   u32 uid (BE)   u64 bytes, u64 messages  (kept by apply)
//	quotas  u32 uid (BE)   u64 bytes, u64 messages  (0: no limit)
var (
	bucketUsage  = []byte("usage")
	bucketQuotas = []byte("quotas")
)

// Quota is a limit on a uid's sealed messages; 0 means no limit.
type Quota struct {
	Bytes    uint64 `json:"bytes"`
	Messages uint64 `json:"messages"`
}

// Usage is what a uid's sealed messages take.
type Usage struct {
	Bytes    uint64 `json:"bytes"`
	Messages uint64 `json:"messages"`
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

func encodePair(a, b uint64) []byte {
	return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(make([]byte, 0, 16), a), b)
}

func decodePair(v []byte) (uint64, uint64) {
	if len(v) != 16 {
		return 0, 0
	}
	return binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint64(v[8:])
}

func (x ix) usage(uid uint32) Usage {
	b, m := decodePair(x.tx.Bucket(bucketUsage).Get(uidKey(uid)))
	return Usage{Bytes: b, Messages: m}
}

func (x ix) quota(uid uint32) Quota {
	b, m := decodePair(x.tx.Bucket(bucketQuotas).Get(uidKey(uid)))
	return Quota{Bytes: b, Messages: m}
}

// charge adds (sign 1) or removes (sign -1) sealed inode n from its
// uid's usage.
func (x ix) charge(n *inode, sign int64) error {
	u := x.usage(n.UID)
	u.Bytes = uint64(int64(u.Bytes) + sign*int64(n.Size))
	u.Messages = uint64(int64(u.Messages) + sign)
	if u == (Usage{}) {
		return x.tx.Bucket(bucketUsage).Delete(uidKey(n.UID))
	}
	return x.tx.Bucket(bucketUsage).Put(uidKey(n.UID), encodePair(u.Bytes, u.Messages))
}

func (x ix) putQuota(uid uint32, q Quota) error {
	if q == (Quota{}) {
		return x.tx.Bucket(bucketQuotas).Delete(uidKey(uid))
	}
	return x.tx.Bucket(bucketQuotas).Put(uidKey(uid), encodePair(q.Bytes, q.Messages))
}

// admits reports whether uid may own one more message of size bytes.
func (x ix) admits(uid uint32, size uint64) bool {
	return x.admitsBeside(uid, size, Usage{})
}

// admitsBeside is admits with pending counted as used.
func (x ix) admitsBeside(uid uint32, size uint64, pending Usage) bool {
	q, u := x.quota(uid), x.usage(uid)
	u.Bytes += pending.Bytes
	u.Messages += pending.Messages
	return (q.Bytes == 0 || u.Bytes+size <= q.Bytes) && (q.Messages == 0 || u.Messages+1 <= q.Messages)
}

// over reports whether uid is past a limit (the quota was lowered below
// its usage), or has no byte left.
func (x ix) over(uid uint32) bool {
	q, u := x.quota(uid), x.usage(uid)
	return q.Bytes > 0 && u.Bytes >= q.Bytes || q.Messages > 0 && u.Messages > q.Messages
}

func applyQuota(x ix, op *record.Op) error {
	return x.putQuota(op.UID, Quota{Bytes: op.Size, Messages: op.Count})
}

// SetQuota sets the quota of uid (and so of every user with that uid).
func (s *Store) SetQuota(uid uint32, q Quota) error {
	_, err := s.mutate(func(x ix) (*record.Op, error) {
		return &record.Op{Code: record.OpQuota, UID: uid, Size: q.Bytes, Count: q.Messages}, nil
	})
	return err
}

// QuotaOf returns the quota and usage of uid.
func (s *Store) QuotaOf(uid uint32) (Quota, Usage, error) {
	var q Quota
	var u Usage
	err := s.db.View(func(tx *bolt.Tx) error {
		q, u = ix{tx}.quota(uid), ix{tx}.usage(uid)
		return nil
	})
	return q, u, err
}

// OverQuota reports whether the owner of inode ino is over quota,
// so that writes to its spooled files fail with ErrQuota.
func (s *Store) OverQuota(ino uint64) bool {
	over := false
	s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		if n, err := x.inode(ino); err == nil {
			over = x.over(n.UID)
		}
		return nil
	})
	return over
}

// AdmitMessage checks that a message of size bytes that uid owns could
// be sealed beside pending, the files of uid's that wait to be sealed:
// ErrTooBig past the store's size limit, ErrQuota past uid's quota. A
// file written in place in new/ or cur/ is held to it as it grows, so
// that the write fails, as a delivery would, and not its seal later.
func (s *Store) AdmitMessage(uid uint32, size uint64, pending Usage) error {
	if s.tooBig(size) {
		return fmt.Errorf("%w: %d bytes", ErrTooBig, size)
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if x := (ix{tx}); !x.admitsBeside(uid, size, pending) {
			return errQuota(uid)
		}
		return nil
	})
}

// checkUsage recomputes every uid's usage from the inodes.
func checkUsage(x ix, r *Report) error {
	want := map[uint32]Usage{}
	err := x.tx.Bucket(bucketInodes).ForEach(func(_, v []byte) error {
		n, err := decodeInode(v)
		if err == nil && n.sealed() {
			u := want[n.UID]
			u.Bytes += n.Size
			u.Messages++
			want[n.UID] = u
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = x.tx.Bucket(bucketUsage).ForEach(func(k, v []byte) error {
		uid := uint32(inoFromKey(append(make([]byte, 4), k...)))
		if got := x.usage(uid); got != want[uid] {
			r.problem("uid %d: usage counts %d bytes in %d messages, the inodes hold %d in %d", uid, got.Bytes, got.Messages, want[uid].Bytes, want[uid].Messages)
		}
		delete(want, uid)
		return nil
	})
	for uid, u := range want {
		r.problem("uid %d: no usage counted, the inodes hold %d bytes in %d messages", uid, u.Bytes, u.Messages)
	}
	return err
}

func errQuota(uid uint32) error { return fmt.Errorf("%w: uid %d", ErrQuota, uid) }
