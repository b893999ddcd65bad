package backend

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/packdir/packdir/backend/record"
)

// RecoverConfig writes store.json for a store that lost it (see
// LostConfig). Every container header carries the store id, so the id is
// taken from them, and they must agree. The headers hold no limits: the
// container size is the default, or the largest container's size if that
// is larger (so that no record is too long to read), and every other
// setting is the default. It returns the config written and one note per
// setting that is a default, for the administrator to check.
func RecoverConfig(dir string) (Config, []string, error) {
	if Exists(dir) {
		return Config{}, nil, fmt.Errorf("backend: %s/store.json: %w", dir, ErrExists)
	}
	if err := checkLayout(dir); err != nil {
		return Config{}, nil, err
	}
	id, largest, err := storeIDFromHeaders(&containerFiles{dir: filepath.Join(dir, "containers")})
	if err != nil {
		return Config{}, nil, err
	}
	files := &containerFiles{dir: filepath.Join(dir, "containers")}
	cfg := Config{Format: FormatVersion, StoreID: hex.EncodeToString(id[:]),
		ContainerSize: max(DefaultContainerSize, largest), MaxMessageSize: DefaultMaxMessageSize,
		Dedup: dedupFromRecords(files, largest)}
	if err := writeConfig(dir, cfg); err != nil {
		return Config{}, nil, fmt.Errorf("backend: %w", err)
	}
	notes := []string{
		fmt.Sprintf("container_size %d (the default, or the largest container)", cfg.ContainerSize),
		fmt.Sprintf("max_message_size %d (the default)", cfg.MaxMessageSize),
		"max_containers 0, no limit (the default)",
		fmt.Sprintf("compact_threshold %d (the default)", DefaultCompactThreshold),
		"compression none for new messages (the default; compressed messages stay readable)",
		fmt.Sprintf("dedup %s (from the payload records, which say whether their keys hold their owner's uid)", cfg.Dedup),
	}
	return cfg, notes, nil
}

// dedupFromRecords tells a store's de-duplication scope from its payload
// records: under DedupUser each carries its owner's uid (record.FlagOwner),
// under DedupStore none does. The first payload record found decides; a
// store with none gets the default of a new store, which no record
// contradicts.
func dedupFromRecords(files *containerFiles, maxBody int64) string {
	nums, err := files.list()
	if err != nil {
		return DedupUser
	}
	for _, n := range nums {
		f, err := openFile(files.path(n), os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		sc := record.NewScanner(bufio.NewReaderSize(io.NewSectionReader(f, record.HeaderSize, 1<<62), 1<<20), record.HeaderSize, uint32(min(maxBody, 1<<32-1)))
		for sc.Next() {
			if rec := sc.Record(); rec.Type == record.TypePayload {
				f.Close()
				if rec.Flags&record.FlagOwner != 0 {
					return DedupUser
				}
				return DedupStore
			}
		}
		f.Close()
	}
	return DedupUser
}

// storeIDFromHeaders returns the store id the container headers name,
// and the size of the largest container.
func storeIDFromHeaders(files *containerFiles) ([16]byte, int64, error) {
	var id [16]byte
	nums, err := files.list()
	if err != nil {
		return id, 0, err
	}
	if len(nums) == 0 {
		return id, 0, fmt.Errorf("backend: %s holds no container to read the store id from", files.dir)
	}
	var largest int64
	for i, n := range nums {
		h, size, err := readContainerHeader(files.path(n))
		switch {
		case err != nil:
			return id, 0, err
		case h.Number != n:
			return id, 0, fmt.Errorf("backend: %s: header names container %d", files.path(n), h.Number)
		case i > 0 && h.StoreID != id:
			return id, 0, fmt.Errorf("backend: %s names store %x, %s store %x: containers of two stores are mixed",
				files.path(n), h.StoreID, files.path(nums[0]), id)
		}
		id, largest = h.StoreID, max(largest, size)
	}
	return id, largest, nil
}

func readContainerHeader(path string) (record.ContainerHeader, int64, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return record.ContainerHeader{}, 0, fmt.Errorf("backend: %w", err)
	}
	defer f.Close()
	buf := make([]byte, record.HeaderSize)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return record.ContainerHeader{}, 0, fmt.Errorf("backend: %s: cannot read header: %w", path, err)
	}
	h, err := record.DecodeHeader(buf)
	if err != nil {
		return h, 0, fmt.Errorf("backend: %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return h, 0, fmt.Errorf("backend: %w", err)
	}
	return h, fi.Size(), nil
}

// Unrecoverable lists the containers that the index at indexPath (of the
// store in dir) names and whose files are missing: what a rebuild of the
// index from the containers cannot recover. It opens the index read-only;
// a store with no index gives nothing.
func Unrecoverable(dir, indexPath string) ([]string, error) {
	var lost []string
	err := viewIndexFile(indexPath, func(x ix) error {
		files := containerFiles{dir: filepath.Join(dir, "containers")}
		b := x.tx.Bucket(bucketContainers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			c, err := decodeContainerInfo(v)
			n := containerNum(k)
			if _, serr := os.Lstat(files.path(n)); err == nil && !c.Deleted && errors.Is(serr, os.ErrNotExist) {
				lost = append(lost, fmt.Sprintf("container %d: %s is missing", n, files.path(n)))
			}
			return nil
		})
	})
	return lost, err
}

// NotRecovered lists, by path, the files that the index at oldIndex holds
// and the store's index does not: after a rebuild of the index from the
// containers, what it could not recover.
func (s *Store) NotRecovered(oldIndex string) ([]string, error) {
	var before, after map[string]bool
	if err := viewIndexFile(oldIndex, func(x ix) error { before = filePaths(x); return nil }); err != nil {
		return nil, err
	}
	if err := s.db.View(func(tx *bolt.Tx) error { after = filePaths(ix{tx}); return nil }); err != nil {
		return nil, err
	}
	var lost []string
	for p := range before {
		if !after[p] {
			lost = append(lost, p)
		}
	}
	sort.Strings(lost)
	return lost, nil
}

// filePaths returns the path of every name of a file (not a directory)
// in x, from the store root.
func filePaths(x ix) map[string]bool {
	dirs, files, _ := namedFiles(x, func(*dirName) bool { return true })
	paths := make(map[string]bool, len(files))
	for _, e := range files {
		paths[pathOf(dirs, e)] = true
	}
	return paths
}

// viewIndexFile runs fn in a read-only transaction of the index file at
// path, opened read-only; a missing file runs nothing.
func viewIndexFile(path string, fn func(x ix) error) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := verifyIndexFile(path); err != nil {
		return fmt.Errorf("backend: %s is damaged: %v", path, err)
	}
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond, OpenFile: openFile})
	if err != nil {
		return fmt.Errorf("backend: %s: %v", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error { return fn(ix{tx}) })
}
