package backend

import (
	bolt "go.etcd.io/bbolt"
)

// Stats is a summary of what a store holds and what its space is used for.
type Stats struct {
	Users          int              `json:"users"`
	Folders        int              `json:"folders"`  // directories holding a cur/ subdirectory
	Messages       int              `json:"messages"` // sealed files
	MessageBytes   uint64           `json:"message_bytes"`
	Payloads       int              `json:"payloads"` // distinct stored message bodies in use
	SpooledFiles   int              `json:"spooled_files"`
	ContainerBytes uint64           `json:"container_bytes"`
	LiveBytes      uint64           `json:"live_bytes"`
	DeadBytes      uint64           `json:"dead_bytes"` // ops, seals, and payloads no inode holds
	Containers     []ContainerStats `json:"containers"`
}

// ContainerStats is one container's share of the store.
type ContainerStats struct {
	Number uint32 `json:"number"`
	Bytes  uint64 `json:"bytes"`
	Live   uint64 `json:"live_bytes"`
	Sealed bool   `json:"sealed"`
}

// Stats summarises the store.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		x := ix{tx}
		st.Users = tx.Bucket(bucketUsers).Stats().KeyN
		if err := countInodes(x, &st); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPayloads).ForEach(func(_, v []byte) error {
			p, err := decodePayload(v)
			if err == nil && p.Refs > 0 {
				st.Payloads++
			}
			return err
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketContainers).ForEach(func(k, v []byte) error {
			c, err := decodeContainerInfo(v)
			if err != nil || c.Deleted {
				return err
			}
			st.Containers = append(st.Containers, ContainerStats{Number: uint32(inoFromKey(append(make([]byte, 4), k...))), Bytes: c.Written, Live: c.Live, Sealed: c.Sealed})
			st.ContainerBytes += c.Written
			st.LiveBytes += c.Live
			return nil
		})
	})
	st.DeadBytes = st.ContainerBytes - st.LiveBytes
	return st, err
}

func countInodes(x ix, st *Stats) error {
	err := x.tx.Bucket(bucketInodes).ForEach(func(_, v []byte) error {
		n, err := decodeInode(v)
		switch {
		case err != nil:
			return err
		case n.sealed():
			st.Messages++
			st.MessageBytes += n.Size
		case n.isFile():
			st.SpooledFiles++
		}
		return nil
	})
	if err != nil {
		return err
	}
	c := x.tx.Bucket(bucketDirents).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if string(k[8:]) == "cur" {
			st.Folders++
		}
	}
	return nil
}
