package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/fs"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:         "init",
		Usage:        "create an empty store",
		ArgsUsage:    "STORE",
		Description:  "Example:\n   packdir init --container-size 256MiB /srv/mail/store",
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "container-size", Value: "1GiB", Usage: "seal a container at this size"},
			&cli.IntFlag{Name: "max-containers", Usage: "the store is full at this many containers (0: no limit)"},
			&cli.StringFlag{Name: "max-message-size", Value: "64MiB", Usage: "refuse larger messages with EFBIG (at most what a container holds; without this flag, 64MiB or what a container holds if less)"},
			&cli.StringFlag{Name: "compression", Value: "none", Usage: "none, or zstd: store each message as a zstd frame when that is smaller"},
			&cli.IntFlag{Name: "compact-threshold", Value: backend.DefaultCompactThreshold, Usage: "compact a sealed container once this percentage of it is dead"},
			&cli.StringFlag{Name: "dedup", Value: backend.DedupUser, Usage: "store the same message once per uid (user), or once in the store (store: less space, " +
				"but a user can tell from the free space whether anyone holds a message); fixed for the store's life"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "STORE")
			if err != nil {
				return err
			}
			cfg := backend.Config{MaxContainers: c.Int("max-containers"), CompactThreshold: c.Int("compact-threshold"), Dedup: c.String("dedup")}
			if cfg.Dedup != backend.DedupUser && cfg.Dedup != backend.DedupStore {
				return usagef("--dedup is user or store, not %q", cfg.Dedup)
			}
			switch c.String("compression") {
			case "none":
			case backend.CompressionZstd:
				cfg.Compression = backend.CompressionZstd
			default:
				return usagef("--compression is none or zstd, not %q", c.String("compression"))
			}
			if cfg.CompactThreshold < 1 || cfg.CompactThreshold > 100 {
				return usagef("--compact-threshold is a percentage from 1 to 100")
			}
			if cfg.ContainerSize, err = parseSize("--container-size", c.String("container-size")); err != nil {
				return err
			}
			// Not given, the store's default: 64MiB, or what a container holds.
			if c.IsSet("max-message-size") {
				if cfg.MaxMessageSize, err = parseSize("--max-message-size", c.String("max-message-size")); err != nil {
					return err
				}
			}
			if cfg.MaxContainers < 0 {
				return usagef("--max-containers must not be negative")
			}
			if err := checkInitDir(a[0]); err != nil {
				return err
			}
			if err := backend.Init(a[0], cfg); err != nil {
				return err
			}
			fmt.Printf("created store %s\n", a[0])
			if fits := backend.MaxMessageIn(cfg.ContainerSize); cfg.MaxMessageSize == 0 && fits < backend.DefaultMaxMessageSize {
				fmt.Printf("messages of up to %d bytes: what a container of %d bytes holds\n", fits, cfg.ContainerSize)
			}
			return nil
		},
	}
}

// checkInitDir refuses to make a store among other files: a Maildir or a
// home directory given by mistake (arguments swapped) would get the
// store's files written among its own. A new directory, an empty one and
// the root of a new file system (lost+found) are fine.
func checkInitDir(dir string) error {
	if backend.Exists(dir) {
		return fmt.Errorf("%s is a packdir store already", dir)
	}
	if err := backend.LostConfig(dir); err != nil {
		return err
	}
	names, err := dirNames(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("init %s: %w", dir, err)
	case len(names) > 0:
		return fmt.Errorf("%s is not empty (%s): a store is made in a new or empty directory", dir, sample(names))
	}
	return nil
}

// parseSize reads a size such as 4096, 64KiB, 256MiB or 1GiB.
func parseSize(flag, v string) (int64, error) {
	var n int64
	var unit string
	if _, err := fmt.Sscanf(v, "%d%s", &n, &unit); err != nil && unit == "" {
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			return 0, usagef("%s: %q is not a size (use e.g. 64MiB)", flag, v)
		}
	}
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	if mult == 0 || n <= 0 {
		return 0, usagef("%s: %q is not a size (use e.g. 64MiB)", flag, v)
	}
	return n * mult, nil
}

func userCommand() *cli.Command {
	storeFlag := &cli.StringFlag{Name: "store", EnvVars: []string{"PACKDIR_STORE"}, Usage: "the store (or give it after NAME)"}
	return &cli.Command{
		Name:  "user",
		Usage: "add and list users",
		Description: "Examples:\n" +
			"   packdir user add --uid 1001 --gid 1001 alice /srv/mail/store\n" +
			"   packdir user list /srv/mail/store",
		OnUsageError: onUsageError,
		Action:       unknownCommand,
		Subcommands: []*cli.Command{{
			Name:      "add",
			Usage:     "add a user with an empty Maildir++ tree (INBOX, .Draft, .Outbox, .Trash)",
			ArgsUsage: "NAME [STORE]",
			Description: "Every file and directory of the user's tree is owned by --uid and --gid.\n\n" +
				"Example:\n   packdir user add --uid 1001 --gid 1001 alice /srv/mail/store",
			OnUsageError: onUsageError,
			Flags: []cli.Flag{storeFlag,
				&cli.Uint64Flag{Name: "uid", Value: uint64(os.Getuid()), Usage: "owner of the user's tree"},
				&cli.Uint64Flag{Name: "gid", Value: uint64(os.Getgid()), Usage: "group of the user's tree"},
				quotaBytesFlag(), quotaMessagesFlag(),
			},
			Action: userAdd,
		}, {
			Name:      "set",
			Usage:     "set a user's quota",
			ArgsUsage: "NAME [STORE]",
			Description: "The quota limits the messages in new/ and cur/ owned by the user's uid (users\n" +
				"sharing a uid share it): a delivery past it fails with EDQUOT. 0 removes a limit.\n\n" +
				"Example:\n   packdir user set --quota-bytes 2GiB --quota-messages 100000 alice /srv/mail/store",
			OnUsageError: onUsageError,
			Flags:        []cli.Flag{storeFlag, quotaBytesFlag(), quotaMessagesFlag()},
			Action:       userSet,
		}, {
			Name:         "list",
			Usage:        "list users",
			ArgsUsage:    "[STORE]",
			Description:  "Example:\n   packdir user list /srv/mail/store",
			OnUsageError: onUsageError,
			Flags:        []cli.Flag{storeFlag},
			Action:       userList,
		}},
	}
}

// storeArg is the store given as the argument at index i, or by --store.
func storeArg(c *cli.Context, i int) (string, error) {
	switch {
	case c.NArg() == i+1:
		return c.Args().Get(i), nil
	case c.NArg() == i && c.String("store") != "":
		return c.String("store"), nil
	}
	if c.NArg() > i+1 {
		return "", usagef("%s needs %d arguments (%s), got %d (see 'packdir %s --help')",
			cmdName(c), i+1, c.Command.ArgsUsage, c.NArg(), cmdName(c))
	}
	return "", usagef("%s: name the store as an argument or with --store (see 'packdir %s --help')", cmdName(c), cmdName(c))
}

func userAdd(c *cli.Context) error {
	if c.NArg() < 1 {
		return usagef("user add needs a user NAME (see 'packdir user add --help')")
	}
	dir, err := storeArg(c, 1)
	if err != nil {
		return err
	}
	uid, err := idFlag(c, "uid")
	if err != nil {
		return err
	}
	gid, err := idFlag(c, "gid")
	if err != nil {
		return err
	}
	qc, err := parseQuota(c)
	if err != nil {
		return err
	}
	s, err := openStore(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := fs.AddUser(s, c.Args().First(), uid, gid)
	if err != nil {
		return err
	}
	fmt.Printf("added user %s (uid %d, gid %d)\n", u.Name, u.UID, u.GID)
	if qc.empty() {
		return nil
	}
	return qc.apply(s, u)
}

// idFlag reads --uid or --gid as the kernel keeps ids, in 32 bits: a
// larger number would wrap to another id. 4294967295 is (uid_t)-1, which
// chown reads as "leave unchanged", so it is no one's id either.
func idFlag(c *cli.Context, name string) (uint32, error) {
	v := c.Uint64(name)
	if v >= math.MaxUint32 {
		return 0, usagef("--%s %d is out of range: an id is from 0 to %d", name, v, uint32(math.MaxUint32-1))
	}
	return uint32(v), nil
}

func quotaBytesFlag() cli.Flag {
	return &cli.StringFlag{Name: "quota-bytes", Usage: "limit on the bytes of the user's messages, e.g. 2GiB (0: none)"}
}

func quotaMessagesFlag() cli.Flag {
	return &cli.Uint64Flag{Name: "quota-messages", Usage: "limit on the number of the user's messages (0: none)"}
}

func userSet(c *cli.Context) error {
	if c.NArg() < 1 {
		return usagef("user set needs a user NAME (see 'packdir user set --help')")
	}
	qc, err := parseQuota(c)
	if err != nil {
		return err
	}
	if qc.empty() {
		return usagef("user set: give --quota-bytes or --quota-messages (see 'packdir user set --help')")
	}
	dir, err := storeArg(c, 1)
	if err != nil {
		return err
	}
	s, err := openStore(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := s.User(c.Args().First())
	if err != nil {
		return err
	}
	return qc.apply(s, u)
}

// quotaChange is the quota limits given on the command line, parsed
// before the store is opened so that a mistyped one changes nothing (user
// add used to add the user, then fail on the quota). A nil limit is left
// as it is.
type quotaChange struct {
	bytes, messages *uint64
}

func parseQuota(c *cli.Context) (quotaChange, error) {
	var qc quotaChange
	if c.IsSet("quota-bytes") {
		var n uint64
		if v := c.String("quota-bytes"); v != "0" {
			size, err := parseSize("--quota-bytes", v)
			if err != nil {
				return qc, err
			}
			n = uint64(size)
		}
		qc.bytes = &n
	}
	if c.IsSet("quota-messages") {
		n := c.Uint64("quota-messages")
		qc.messages = &n
	}
	return qc, nil
}

func (qc quotaChange) empty() bool { return qc.bytes == nil && qc.messages == nil }

// apply sets the limits given, keeping the other.
func (qc quotaChange) apply(s *backend.Store, u backend.User) error {
	q, _, err := s.QuotaOf(u.UID)
	if err != nil {
		return err
	}
	if qc.bytes != nil {
		q.Bytes = *qc.bytes
	}
	if qc.messages != nil {
		q.Messages = *qc.messages
	}
	if err := s.SetQuota(u.UID, q); err != nil {
		return err
	}
	fmt.Printf("quota of %s (uid %d): %s, %s\n", u.Name, u.UID, limit(q.Bytes, " bytes"), limit(q.Messages, " messages"))
	return nil
}

func limit(n uint64, unit string) string {
	switch {
	case n == 0 && unit == "":
		return "no limit"
	case n == 0:
		return "no limit on" + unit
	}
	return fmt.Sprintf("%d%s", n, unit)
}

func userList(c *cli.Context) error {
	dir, err := storeArg(c, 0)
	if err != nil {
		return err
	}
	// A listing writes nothing, as fsck and stats.
	s, err := openStoreWith(dir, backend.Options{Logger: logger(), ReadOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	users, err := s.Users()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tUID\tGID")
	for _, u := range users {
		fmt.Fprintf(w, "%s\t%d\t%d\n", u.Name, u.UID, u.GID)
	}
	return w.Flush()
}

func fsckCommand() *cli.Command {
	return &cli.Command{
		Name:      "fsck",
		Usage:     "verify every record checksum and every index reference",
		ArgsUsage: "STORE",
		Description: "Reports exactly what is wrong and exits 1 if anything is; never repairs by\n" +
			"dropping data. With --rebuild, the index is first recreated from the\n" +
			"containers alone (the old one is kept as index.db.old-TIME).\n\n" +
			"Examples:\n   packdir fsck /srv/mail/store\n   packdir fsck --rebuild /srv/mail/store",
		OnUsageError: onUsageError,
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "rebuild", Usage: "recreate index.db from the containers"}},
		Action:       runFsck,
	}
}

// runFsck checks the store. Without --rebuild it opens the store
// read-only and changes no byte of it (not even by recovery: a store that
// was not closed cleanly is reported as such). With --rebuild it repairs
// what it can, says what it did, and says what it could not recover.
func runFsck(c *cli.Context) error {
	a, err := args(c, "STORE")
	if err != nil {
		return err
	}
	if !c.Bool("rebuild") {
		s, err := openStoreWith(a[0], backend.Options{Logger: logger(), ReadOnly: true})
		if err != nil {
			return err
		}
		defer s.Close()
		return check(s, a[0])
	}
	return rebuild(a[0])
}

// rebuild recreates store.json if it is lost, then the index from the
// containers, checks the result, and reports as problems what the old
// index had that the new one has not.
func rebuild(dir string) error {
	if err := recoverConfig(dir); err != nil {
		return err
	}
	missing, err := backend.Unrecoverable(dir, filepath.Join(dir, "index.db"))
	if err != nil {
		fmt.Printf("cannot tell from the old index what is lost: %v\n", err)
	}
	for _, m := range missing {
		fmt.Println("cannot recover:", m)
	}
	old, err := setIndexAside(dir)
	if err != nil {
		return err
	}
	s, err := openStore(dir)
	if err != nil {
		if old != "" {
			restoreIndex(dir, old)
		}
		return err
	}
	defer s.Close()
	var lost []string
	for _, m := range missing {
		lost = append(lost, "not recovered: "+m)
	}
	if old != "" {
		paths, err := s.NotRecovered(old)
		if err != nil {
			fmt.Printf("cannot tell from the old index what is lost: %v\n", err)
		}
		for _, p := range paths {
			lost = append(lost, "not recovered: "+p+" (in the old index, not in the containers)")
		}
	}
	return check(s, dir, lost...)
}

// recoverConfig writes store.json from the container headers if it is lost.
func recoverConfig(dir string) error {
	if backend.LostConfig(dir) == nil {
		return nil
	}
	release, err := lockIndex(dir)
	if err != nil {
		return err
	}
	if release != nil {
		defer release()
	}
	cfg, notes, err := backend.RecoverConfig(dir)
	if err != nil {
		return err
	}
	fmt.Printf("store.json was missing: wrote a new one with store id %s from the container headers; the headers hold no limits, so these are set:\n", cfg.StoreID)
	for _, n := range notes {
		fmt.Println("  " + n)
	}
	fmt.Printf("edit %s if the store had others\n", filepath.Join(dir, "store.json"))
	return nil
}

// check runs fsck's checks and prints the report, with more problems
// found by the caller.
func check(s *backend.Store, dir string, more ...string) error {
	r, err := s.Check()
	if err != nil {
		return err
	}
	r.Problems = append(r.Problems, more...)
	fmt.Printf("checked %d containers: %d records (%d payloads, %d ops), %d bytes\n", r.Containers, r.Records, r.Payloads, r.Ops, r.Bytes)
	fmt.Printf("checked index: %d inodes, %d names\n", r.Inodes, r.Dirents)
	for _, p := range r.Problems {
		fmt.Println("problem:", escapeControl(p))
	}
	if !r.OK() {
		return fmt.Errorf("%s: %d problems found", dir, len(r.Problems))
	}
	fmt.Println("no problems found")
	return nil
}

// setIndexAside moves index.db out of the way so that Open rebuilds it,
// and returns where it went ("" if there was none). It refuses while a
// packdir has the store open: that one holds bbolt's lock on the file, and
// a rebuild beside it would replay, and maybe cut as a torn tail, the
// journal it is appending to.
func setIndexAside(dir string) (string, error) {
	if !backend.Exists(dir) {
		return "", fmt.Errorf("%s is not a packdir store", dir)
	}
	idx := filepath.Join(dir, "index.db")
	release, err := lockIndex(dir)
	if err != nil || release == nil {
		return "", err
	}
	defer release() // holds the lock until the index is out of the way
	old := fmt.Sprintf("%s.old-%s", idx, time.Now().Format("20060102T150405"))
	if err := os.Rename(idx, old); err != nil {
		return "", err
	}
	fmt.Printf("moved the index to %s; rebuilding it from the containers\n", old)
	return old, nil
}

// lockIndex takes the store's lock (backend.Open's flock on the store
// directory, which a running packdir holds even if index.db was removed
// under it) and bbolt's lock on index.db, and returns their release;
// nil, nil if there is no index.
func lockIndex(dir string) (func(), error) {
	inUse := fmt.Errorf("store %s is in use by a running packdir; unmount it first", dir)
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		return nil, inUse
	}
	f, err := os.OpenFile(filepath.Join(dir, "index.db"), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if os.IsNotExist(err) {
		d.Close()
		return nil, nil
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		d.Close()
		return nil, inUse
	}
	return func() { f.Close(); d.Close() }, nil
}

// restoreIndex puts the index set aside back after a failed rebuild, so
// that a store whose journal cannot be replayed whole (a damaged record)
// still mounts with the index it had.
func restoreIndex(dir, old string) {
	idx := filepath.Join(dir, "index.db")
	if err := os.Remove(idx); err != nil && !os.IsNotExist(err) {
		fmt.Fprintf(os.Stderr, "packdir: the rebuild failed and %s cannot be removed: %v\n", idx, err)
		return
	}
	if err := os.Rename(old, idx); err != nil {
		fmt.Fprintf(os.Stderr, "packdir: the rebuild failed and %s cannot be put back: %v\n", old, err)
		return
	}
	fmt.Printf("the rebuild failed: put the index back from %s\n", old)
}

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:         "stats",
		Usage:        "show users, folders, messages, bytes, live and dead bytes, containers",
		ArgsUsage:    "STORE",
		Description:  "Examples:\n   packdir stats /srv/mail/store\n   packdir stats --json /srv/mail/store",
		OnUsageError: onUsageError,
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action:       runStats,
	}
}

func runStats(c *cli.Context) error {
	a, err := args(c, "STORE")
	if err != nil {
		return err
	}
	// Read-only, as fsck: a report changes nothing, and on a full disk or
	// a store left open by a crash it reports what is there.
	s, err := openStoreWith(a[0], backend.Options{Logger: logger(), ReadOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Unclean() {
		fmt.Fprintf(os.Stderr, "packdir: %s was not closed cleanly and recovery has not run: these figures are the index's, which the journal may be ahead of; mount the store once to bring it up to date\n", a[0])
	}
	st, err := s.Stats()
	if err != nil {
		return err
	}
	folders, err := allFolderStats(s)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			backend.Stats
			FolderList []folderStats `json:"folder_list"`
		}{st, folders})
	}
	defer func() {
		fw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(fw)
		printFolderStats(fw, folders)
		fw.Flush()
	}()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "users\t%d\n", st.Users)
	fmt.Fprintf(w, "folders\t%d\n", st.Folders)
	fmt.Fprintf(w, "messages\t%d\t(%d bytes, %d distinct bodies)\n", st.Messages, st.MessageBytes, st.Payloads)
	fmt.Fprintf(w, "spooled files\t%d\n", st.SpooledFiles)
	fmt.Fprintf(w, "unsealed files in new/ or cur/\t%d\n", st.UnsealedFiles)
	fmt.Fprintf(w, "stored bodies\t%d bytes\t(%d before compression; de-duplication saves %d, compression %d)\n",
		st.StoredBytes, st.DistinctBytes, st.DedupSavedBytes, st.CompressionSavedBytes)
	fmt.Fprintf(w, "de-duplication\t%s\t(%s)\n", st.DedupScope, dedupMeaning[st.DedupScope])
	fmt.Fprintf(w, "containers\t%d\t(%d bytes: %d live, %d dead)\n", len(st.Containers), st.ContainerBytes, st.LiveBytes, st.DeadBytes)
	for _, ct := range st.Containers {
		sealed := "active"
		if ct.Sealed {
			sealed = "sealed"
		}
		fmt.Fprintf(w, "  %08d.pack\t%d bytes\t%d live\t%d dead\t%s\n", ct.Number, ct.Bytes, ct.Live, ct.Dead, sealed)
	}
	for _, u := range st.UserSpace {
		fmt.Fprintf(w, "user %s\tuid %d\t%d bytes of %s\t%d messages of %s\n", u.Name, u.UID,
			u.Usage.Bytes, limit(u.Quota.Bytes, ""), u.Usage.Messages, limit(u.Quota.Messages, ""))
	}
	return w.Flush()
}

// dedupMeaning says what each de-duplication scope shares, for stats.
var dedupMeaning = map[string]string{
	backend.DedupStore: "one copy of a message for the whole store",
	backend.DedupUser:  "one copy of a message per uid",
}

func compactCommand() *cli.Command {
	return &cli.Command{
		Name:      "compact",
		Usage:     "rewrite containers whose dead share passes the threshold, and delete them",
		ArgsUsage: "STORE",
		Description: "A mounted store does this by itself in the background; this command is for\n" +
			"an unmounted one. It prints the containers and bytes it reclaimed.\n\n" +
			"Examples:\n   packdir compact /srv/mail/store\n   packdir compact --threshold 10 /srv/mail/store",
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threshold", Usage: "dead share in percent from which a container is compacted (default: the store's)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runCompact,
	}
}

func runCompact(c *cli.Context) error {
	a, err := args(c, "STORE")
	if err != nil {
		return err
	}
	if t := c.Int("threshold"); t < 0 || t > 100 {
		return usagef("--threshold is a percentage from 1 to 100")
	}
	s, err := openStore(a[0])
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.Compact(c.Int("threshold"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Printf("reclaimed %d containers, %d bytes (copied %d bytes of live messages, wrote a %d-byte checkpoint in %v)\n",
		res.Containers, res.Reclaimed, res.Copied, res.Checkpoint, res.CheckpointLock.Round(time.Millisecond))
	for _, r := range res.SkippedReasons {
		fmt.Println("kept:", r)
	}
	return nil
}
