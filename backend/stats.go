package backend

import (
	bolt "go.etcd.io/bbolt"
)

// Stats is a summary of what a store holds and what its space is used for.
type Stats struct {
	Users        int    `json:"users"`
	Folders      int    `json:"folders"`  // directories holding a cur/ subdirectory
	Messages     int    `json:"messages"` // sealed files (a hard-linked file counts once)
	MessageBytes uint64 `json:"message_bytes"`
	Payloads     int    `json:"payloads"` // distinct stored message bodies in use
	// DistinctBytes is the original size of those bodies, StoredBytes what
	// they take in containers (after compression, before record framing).
	DistinctBytes uint64 `json:"distinct_bytes"`
	StoredBytes   uint64 `json:"stored_bytes"`
	// DedupScope is Config.Dedup: whether bodies are shared across the
	// store or only among the messages of one uid.
	DedupScope string `json:"dedup_scope"`
	// DedupSavedBytes is what single-instance storage saves (messages
	// holding the same body), CompressionSavedBytes what zstd saves.
	DedupSavedBytes       uint64           `json:"dedup_saved_bytes"`
	CompressionSavedBytes uint64           `json:"compression_saved_bytes"`
	SpooledFiles          int              `json:"spooled_files"`
	ContainerBytes        uint64           `json:"container_bytes"`
	LiveBytes             uint64           `json:"live_bytes"`
	DeadBytes             uint64           `json:"dead_bytes"` // ops, seals, and payloads no inode holds: what compaction can reclaim
	Containers            []ContainerStats `json:"containers"`
	UserSpace             []UserStats      `json:"user_space"`

	// Unsealed are the files in new/ or cur/ that are not sealed
	// messages: written in place and not sealed yet (a mounted store
	// seals them within seconds, and at unmount), or whose seal failed.
	UnsealedFiles int            `json:"unsealed_files"`
	Unsealed      []UnsealedFile `json:"unsealed"`
}

// ContainerStats is one container's share of the store.
type ContainerStats struct {
	Number uint32 `json:"number"`
	Bytes  uint64 `json:"bytes"`
	Live   uint64 `json:"live_bytes"`
	Dead   uint64 `json:"dead_bytes"`
	Sealed bool   `json:"sealed"`
}

// UserStats is a user's usage against its quota (those of its uid).
type UserStats struct {
	Name  string `json:"name"`
	UID   uint32 `json:"uid"`
	Usage Usage  `json:"usage"`
	Quota Quota  `json:"quota"` // 0: no limit
}

// Stats summarises the store.
func (s *Store) Stats() (Stats, error) {
	st := Stats{DedupScope: s.cfg.Dedup}
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		st.Users = tx.Bucket(bucketUsers).Stats().KeyN
		sizes := map[[32]byte]uint64{}
		spooled := map[uint64]bool{}
		if err := countInodes(x, &st, sizes, spooled); err != nil {
			return err
		}
		var err error
		if st.Unsealed, err = s.unsealedFiles(x, spooled); err != nil {
			return err
		}
		st.UnsealedFiles = len(st.Unsealed)
		if err := countPayloads(x, &st, sizes); err != nil {
			return err
		}
		if err := countUsers(x, &st); err != nil {
			return err
		}
		return countContainers(x, &st)
	})
	st.DeadBytes = st.ContainerBytes - st.LiveBytes
	st.DedupSavedBytes = st.MessageBytes - st.DistinctBytes
	if st.DistinctBytes > st.StoredBytes {
		st.CompressionSavedBytes = st.DistinctBytes - st.StoredBytes
	}
	return st, err
}

func countPayloads(x ix, st *Stats, sizes map[[32]byte]uint64) error {
	return x.tx.Bucket(bucketPayloads).ForEach(func(k, v []byte) error {
		p, err := decodePayload(v)
		if err == nil && p.Refs > 0 {
			var sum [32]byte
			copy(sum[:], k)
			st.Payloads++
			st.StoredBytes += p.Length
			st.DistinctBytes += sizes[sum]
		}
		return err
	})
}

func countUsers(x ix, st *Stats) error {
	return x.tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		u, err := decodeUser(v)
		if err == nil {
			st.UserSpace = append(st.UserSpace, UserStats{Name: string(k), UID: u.UID, Usage: x.usage(u.UID), Quota: x.quota(u.UID)})
		}
		return err
	})
}

func countContainers(x ix, st *Stats) error {
	return x.tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
		c, err := decodeContainerInfo(v)
		if err != nil || c.Deleted {
			return err
		}
		st.Containers = append(st.Containers, ContainerStats{Number: containerNum(k), Bytes: c.Written, Live: c.Live, Dead: c.Written - c.Live, Sealed: c.Sealed})
		st.ContainerBytes += c.Written
		st.LiveBytes += c.Live
		return nil
	})
}

func countInodes(x ix, st *Stats, sizes map[[32]byte]uint64, spooled map[uint64]bool) error {
	err := x.tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
		n, err := decodeInode(v)
		switch {
		case err != nil:
			return err
		case n.sealed():
			st.Messages++
			st.MessageBytes += n.Size
			sizes[n.Payload] = n.Size
		case n.isFile():
			st.SpooledFiles++
			spooled[inoFromKey(k)] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	c := x.tx.Bucket(bucketDirents).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if direntName(k) == "cur" {
			st.Folders++
		}
	}
	return nil
}
