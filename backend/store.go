package backend

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/packdir/packdir/backend/disk"
	"github.com/packdir/packdir/backend/record"
)

// FormatVersion is the store format this code reads and writes.
const FormatVersion = 1

const recordHeaderSize = record.RecordHeaderSize

// Defaults for a new store.
const (
	DefaultContainerSize  = 1 << 30
	DefaultMaxMessageSize = 64 << 20
)

// Config is store.json: the store's identity and limits.
type Config struct {
	Format         int    `json:"format"`
	StoreID        string `json:"store_id"`
	ContainerSize  int64  `json:"container_size"`
	MaxContainers  int    `json:"max_containers"` // 0: no limit
	MaxMessageSize int64  `json:"max_message_size"`
	// CompactThreshold is the dead share, in percent, from which a sealed
	// container is compacted (0: DefaultCompactThreshold).
	CompactThreshold int `json:"compact_threshold,omitempty"`
	// Compression is how new payloads are stored: "" (as they are) or
	// CompressionZstd (a zstd frame, when that is smaller).
	Compression string `json:"compression,omitempty"`
	// Dedup is the scope of single-instance storage: DedupStore (the same
	// bytes are stored once in the store) or DedupUser (once per owning
	// uid). It is fixed at init. A store.json without it predates the
	// choice and is DedupStore, as such stores were; Init writes it.
	Dedup string `json:"dedup,omitempty"`
}

// CompressionZstd is Config.Compression for zstd-compressed payloads.
const CompressionZstd = "zstd"

// De-duplication scopes (Config.Dedup).
const (
	// DedupStore stores the same bytes once in the whole store: the least
	// space, but a user who delivers a message can tell from the free
	// space whether any other user holds it.
	DedupStore = "store"
	// DedupUser stores the same bytes once per owning uid: a copy of
	// another uid's message costs, and takes the same path, as a new one.
	// It is the default of a new store.
	DedupUser = "user"
)

// checkDedup refuses an unknown de-duplication scope.
func checkDedup(scope string) error {
	if scope != DedupStore && scope != DedupUser {
		return fmt.Errorf("backend: de-duplication scope %q: only %q and %q are known", scope, DedupStore, DedupUser)
	}
	return nil
}

// owner is whose a payload committed by an inode of uid is, under the
// store's de-duplication scope.
func (c Config) owner(uid uint32) record.Owner {
	if c.Dedup == DedupUser {
		return record.Owner{Scoped: true, UID: uid}
	}
	return record.Owner{}
}

// Options tune an open store; the zero value is the default.
type Options struct {
	Logger *slog.Logger
	// SyncInterval bounds how long an acknowledged op may stay not durable.
	SyncInterval time.Duration
	// SyncAlways makes every op durable before it returns.
	SyncAlways bool
	// AutoCompact compacts in the background, after a container is
	// sealed and every CompactInterval (0: one minute).
	AutoCompact     bool
	CompactInterval time.Duration
	// CompactThreshold overrides the store's compaction threshold.
	CompactThreshold int
	// ReadOnly opens the index read-only and runs no recovery, so that
	// not one byte of the store changes (for fsck); the store can only
	// be read and checked.
	ReadOnly bool
}

// Store is an open packdir store. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	cfg     Config
	storeID [16]byte
	opts    Options
	log     *slog.Logger
	db      *bolt.DB
	lock    *os.File // the store directory, flocked: see lockStore

	// mu serializes appends to the journal with the index transactions
	// that apply them, so that journal order is apply order.
	mu     sync.Mutex
	seq    uint64 // last sequence number appended
	active *container
	buf    []byte
	closed bool

	files containerFiles
	sync  syncer

	// unclean is set, on a store opened read-only, when its state file
	// says it was not closed: recovery is due and has not run.
	unclean bool

	// compactMu lets one compaction run at a time.
	compactMu sync.Mutex
	compactor compactor
	// rebuild is set while the index is rebuilt from the containers.
	rebuild *rebuildState

	// pins counts, per payload, the holders that still read it although
	// no inode may hold it any more (see Pin).
	pinMu sync.Mutex
	pins  map[[32]byte]int
	// holds are the files kept past their last name (see Hold).
	holds holds

	// changes counts the starts and ends of index write transactions.
	changes atomic.Uint64

	reserve reserve
}

// Exists reports whether dir holds a store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "store.json"))
	return err == nil
}

// LostConfig returns ErrNoConfig, with a one-line message, for a directory
// that holds a store's index or containers but no store.json, and nil
// otherwise. Such a store must not be initialized or opened as a new one:
// a new store id would not match its containers.
func LostConfig(dir string) error {
	if Exists(dir) {
		return nil
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "containers"))
	_, err := os.Lstat(filepath.Join(dir, "index.db"))
	if err != nil && len(entries) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds a store's index or containers but no store.json; 'packdir fsck --rebuild %s' recovers it from the container headers",
		ErrNoConfig, dir, dir)
}

// Init creates a new, empty store in dir with cfg's limits; zero fields get
// the defaults.
func Init(dir string, cfg Config) error {
	if Exists(dir) {
		return fmt.Errorf("backend: init %s: %w", dir, ErrExists)
	}
	if err := LostConfig(dir); err != nil {
		return err
	}
	cfg.Format = FormatVersion
	if cfg.ContainerSize == 0 {
		cfg.ContainerSize = DefaultContainerSize
	}
	if err := initMessageSize(&cfg); err != nil {
		return err
	}
	if cfg.Compression != "" && cfg.Compression != CompressionZstd {
		return fmt.Errorf("backend: compression %q: only %q is known", cfg.Compression, CompressionZstd)
	}
	if cfg.Dedup == "" {
		cfg.Dedup = DedupUser
	}
	if err := checkDedup(cfg.Dedup); err != nil {
		return err
	}
	if cfg.CompactThreshold < 0 || cfg.CompactThreshold > 100 {
		return fmt.Errorf("backend: compaction threshold %d%% is not between 0 and 100", cfg.CompactThreshold)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	cfg.StoreID = hex.EncodeToString(id[:])
	for _, sub := range []string{"", "containers", "spool"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("backend: init: %w", err)
		}
	}
	if err := writeConfig(dir, cfg); err != nil {
		return err
	}
	s, err := Open(dir, Options{})
	if err != nil {
		return err
	}
	return s.Close()
}

// initMessageSize checks that a container holds a message of the maximum
// size: a larger one could never be sealed. Without a limit of its own, a
// store whose containers are smaller than DefaultMaxMessageSize gets the
// largest that fits.
func initMessageSize(cfg *Config) error {
	if cfg.ContainerSize < 64<<10 {
		return fmt.Errorf("backend: container size %d is below the minimum of 64 KiB", cfg.ContainerSize)
	}
	fits := MaxMessageIn(cfg.ContainerSize)
	switch {
	case cfg.MaxMessageSize == 0:
		cfg.MaxMessageSize = min(DefaultMaxMessageSize, fits)
	case cfg.MaxMessageSize > fits:
		return fmt.Errorf("backend: container size %d cannot hold a message of the maximum size %d: "+
			"make containers at least %d bytes, or messages at most %d",
			cfg.ContainerSize, cfg.MaxMessageSize, record.HeaderSize+record.EncodedSize(32+4+int(cfg.MaxMessageSize)), fits)
	}
	return nil
}

// MaxMessageIn is the largest message a container of containerSize bytes
// holds: what is left after the container header and the payload's
// record (header, key, and the owner's uid that a store scoping
// de-duplication per user adds; the body is padded to 8 bytes, which the
// container's own rounding already leaves room for).
func MaxMessageIn(containerSize int64) int64 {
	return (containerSize-record.HeaderSize)&^7 - (record.RecordHeaderSize + 32 + 4)
}

func writeConfig(dir string, cfg Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, "store.json"), append(b, '\n'))
}

// writeFileSync replaces path atomically and durably.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".new"
	f, err := openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func readConfig(dir string) (Config, error) {
	var cfg Config
	if err := LostConfig(dir); err != nil {
		return cfg, err
	}
	b, err := readFile(filepath.Join(dir, "store.json"))
	if err != nil {
		return cfg, fmt.Errorf("backend: %s is not a packdir store: %w", dir, err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("backend: %s/store.json is damaged (%v); move it aside and run 'packdir fsck --rebuild %s' to recover it from the container headers", dir, err, dir)
	}
	if cfg.Format != FormatVersion {
		return cfg, fmt.Errorf("%w: %s has format %d, this packdir reads format %d", ErrFormat, dir, cfg.Format, FormatVersion)
	}
	if cfg.Compression != "" && cfg.Compression != CompressionZstd {
		return cfg, fmt.Errorf("backend: %s/store.json: unknown compression %q", dir, cfg.Compression)
	}
	if cfg.ContainerSize <= record.HeaderSize || cfg.MaxMessageSize <= 0 {
		return cfg, fmt.Errorf("backend: %s/store.json: bad limits", dir)
	}
	if cfg.Dedup == "" {
		cfg.Dedup = DedupStore // written before the scope was a choice
	}
	if err := checkDedup(cfg.Dedup); err != nil {
		return cfg, fmt.Errorf("backend: %s/store.json: %w", dir, err)
	}
	return cfg, nil
}

// Open opens the store in dir, recovering from a crash if it was not closed.
func Open(dir string, opts Options) (*Store, error) {
	if err := CheckFailpoints(); err != nil {
		return nil, err
	}
	if err := checkLayout(dir); err != nil {
		return nil, err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Second
	}
	lock, err := lockStore(dir, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	s, err := openStore(dir, cfg, opts)
	if disk.NoSpace(err) && releaseReserveFile(dir) {
		// Opening writes the state file and may replay the journal into
		// the index; on a full disk that is what the reserve is for.
		opts.Logger.Warn("the disk is full: opening the store with its reserve released", "store", dir)
		s, err = openStore(dir, cfg, opts)
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	if opts.ReadOnly {
		return s, nil // writes nothing: no reserve, no sync loop, no compaction
	}
	s.loadReserve()
	if err := s.fillReserve(); err != nil {
		s.log.Warn("the store's reserve is not whole: new mail gets ENOSPC until space is freed", "err", err)
	}
	s.sync.start(s)
	if opts.AutoCompact {
		s.startCompactor()
	}
	return s, nil
}

// openStore opens the index and brings it up to date; every step can be
// run again after it failed, as after a crash.
func openStore(dir string, cfg Config, opts Options) (*Store, error) {
	s := &Store{dir: dir, cfg: cfg, opts: opts, log: opts.Logger}
	if _, err := hex.Decode(s.storeID[:], []byte(cfg.StoreID)); err != nil || len(cfg.StoreID) != 32 {
		return nil, fmt.Errorf("backend: %s/store.json: bad store id", dir)
	}
	s.files.dir = filepath.Join(dir, "containers")
	open := s.open
	if opts.ReadOnly {
		open = s.openReadOnly
	}
	if err := open(); err != nil {
		s.files.closeAll()
		if s.db != nil {
			s.db.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) open() error {
	st, err := readState(s.dir)
	if err != nil {
		return err
	}
	rebuild := st.dirty && st.bootID != bootID()
	if rebuild {
		s.log.Warn("store was not closed before the machine restarted: rebuilding the index from the containers", "store", s.dir)
		if err := os.Remove(s.indexPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := s.openIndex(false); err != nil {
		return err
	}
	if err := s.checkContainersPresent(); err != nil {
		return err
	}
	if err := s.update(func(tx *bolt.Tx) error { return initIndex(tx, s.storeID) }); err != nil {
		return err
	}
	if err := s.migrateIndex(); err != nil {
		return err
	}
	if err := writeState(s.dir, state{dirty: true, pid: os.Getpid(), bootID: bootID()}); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := s.recover(); err != nil {
		return err
	}
	if err := s.removeCompacted(); err != nil {
		return err
	}
	return s.removeOrphanSpool()
}

// openReadOnly opens the index read-only and runs no recovery: fsck must
// change no byte of the store. Whether recovery is due is kept for Check
// to report.
func (s *Store) openReadOnly() error {
	st, err := readState(s.dir)
	if err != nil {
		return err
	}
	s.unclean = st.dirty
	if _, err := os.Lstat(s.indexPath()); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backend: %s is missing; 'packdir fsck --rebuild %s' rebuilds it from the containers", s.indexPath(), s.dir)
	}
	if err := s.openIndex(true); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return nil
		}
		x := ix{tx}
		if f := x.format(); f != IndexFormat {
			// Only a writable open migrates an index.
			return fmt.Errorf("%w: %s has index format %d, this packdir checks index format %d; mount the store once, which migrates it, or run 'packdir fsck --rebuild %s'",
				ErrFormat, s.indexPath(), f, IndexFormat, s.dir)
		}
		s.seq = x.applied().Seq
		return nil
	})
}

// Unclean reports whether a store opened read-only was not closed
// cleanly: recovery has not run, so the journal may be ahead of the index.
func (s *Store) Unclean() bool { return s.unclean }

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.db") }

func (s *Store) openIndex(readOnly bool) error {
	err := verifyIndexFile(s.indexPath())
	var db *bolt.DB
	if err == nil {
		db, err = openBolt(s.indexPath(), &bolt.Options{
			Timeout:        200 * time.Millisecond,
			NoSync:         true, // the containers are the journal: see FORMAT.md, write ordering
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
			ReadOnly:       readOnly,
			OpenFile:       openFile,
		})
	}
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w: %s", ErrInUse, s.dir)
	}
	if errors.Is(err, ErrSymlink) {
		return err
	}
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		// The file could not be opened (a read-only file system, a disk
		// error): nothing says its bytes are damaged, and a rebuild
		// would meet the same error.
		return fmt.Errorf("backend: cannot open %s: %w", s.indexPath(), err)
	}
	if err != nil {
		return fmt.Errorf("backend: %s is damaged (%v); run 'packdir fsck --rebuild %s'", s.indexPath(), err, s.dir)
	}
	s.db = db
	return nil
}

// Close makes everything durable, syncs the index and releases the store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.mu.Unlock()
	if s.opts.ReadOnly {
		return s.closeReadOnly()
	}
	s.stopCompactor()
	err := s.Sync()
	s.sync.stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.dropOrphans()
	s.removeDroppedSpool(^uint64(0))
	if serr := s.db.Sync(); err == nil {
		err = serr
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.files.closeAll()
	if err == nil {
		err = s.spare(func() error { return writeState(s.dir, state{}) })
	}
	s.lock.Close()
	return err
}

// closeReadOnly closes a store opened read-only, writing nothing.
func (s *Store) closeReadOnly() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.db.Close()
	s.files.closeAll()
	s.lock.Close()
	return err
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Config returns the store's settings.
func (s *Store) Config() Config { return s.cfg }

// state is the file "state": whether the store is open (dirty), by
// which process, in which boot of the machine.
type state struct {
	dirty  bool
	pid    int
	bootID string
}

func readState(dir string) (state, error) {
	b, err := readFile(filepath.Join(dir, "state"))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("backend: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 3 && f[0] == "open" {
		pid, _ := strconv.Atoi(f[1])
		return state{dirty: true, pid: pid, bootID: f[2]}, nil
	}
	return state{}, nil
}

func writeState(dir string, st state) error {
	text := "closed\n"
	if st.dirty {
		text = fmt.Sprintf("open %d %s\n", st.pid, st.bootID)
	}
	return writeFileSync(filepath.Join(dir, "state"), []byte(text))
}

// bootID names this boot of the machine, so that Open can tell a crash of
// the process (page cache intact) from a crash of the machine.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// update runs fn in an index write transaction, counted in changes.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.changes.Add(1)
	defer s.changes.Add(1)
	return s.db.Update(fn)
}

// Changes returns a number that differs from an earlier one if the index
// may have changed since: two calls that return the same number bracket
// a time in which no index write transaction began or ended, so what was
// read from the index in between is still true.
func (s *Store) Changes() uint64 { return s.changes.Load() }
