package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/test/harness"
	"github.com/packdir/packdir/test/treecmp"
)

// The owner of the backed-up user and of every restore target. Not root,
// so that a tool that fails to restore owners (or packdir failing to keep
// a chown) shows in the compare.
const backupUID, backupGID = "1001", "1001"

// backupMailGID is Debian's group "mail".
const backupMailGID = 8

// backupTool is one way to back up a user's tree and restore it into
// another user's: tar, rsync or restic. Each restore target is a fresh,
// empty user of the same store.
type backupTool struct {
	name    string
	opt     treecmp.Options // what the tool is known to keep
	restore func(t *testing.T, src, dst string)
}

// TestBackupRestore fills a user's Maildir++ tree (messages in INBOX
// new/ and cur/ with flags, .Trash, a nested folder, side files, hard
// links between folders, old mtimes, chmod'ed files), then backs it up
// with tar, rsync -aH and restic and restores each backup into an empty
// user of the same store. The restored tree must match the original in
// names, types, modes, owners, sizes, contents, mtimes (files and
// directories) and hard link groups, and the store must fsck clean after
// each restore. The mount serves all users (no --user): MNT/alice is the
// source, MNT/TOOL the restore target.
func TestBackupRestore(t *testing.T) {
	harness.RequireRoot(t)
	harness.RequireFuse(t)
	for _, prog := range []string{"tar", "rsync", "restic"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s is not installed (scripts/test installs it): %v", prog, err)
		}
	}
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", store)
	addBackupUser(t, store, "alice")
	m := harness.Start(t, store, mnt)
	src := filepath.Join(mnt, "alice")
	corpus := filepath.Join(harness.Corpus(t), "spamassassin")
	backupSource{t: t, root: src, corpus: corpus}.fill()
	want := scanTree(t, src)
	requireLivedIn(t, want)
	m.Stop(t)
	harness.Run(t, "fsck", store)
	source := readStats(t, store)
	t.Logf("source: %s; %d messages, %d payloads, %d spooled files in the store",
		describeTree(want), source.Messages, source.Payloads, source.SpooledFiles)

	for _, tool := range backupTools() {
		t.Run(tool.name, func(t *testing.T) { restoreInto(t, tool, store, mnt, want, source) })
	}
	t.Run("localdisk", func(t *testing.T) { localDiskBaseline(t, store, mnt, want) })
	t.Run("rsyncupdate", func(t *testing.T) {
		rsyncUpdate(t, store, mnt, backupSource{t: t, root: src, corpus: corpus}, filepath.Join(mnt, "rsync"))
	})
}

// restoreInto backs up MNT/alice with tool and restores it into a new user
// named after the tool. want is alice's tree, source the store's stats
// when it held alice alone.
func restoreInto(t *testing.T, tool backupTool, store, mnt string, want treecmp.Tree, source storeStats) {
	before := readStats(t, store)
	addBackupUser(t, store, tool.name)
	m := harness.Start(t, store, mnt)
	src, dst := filepath.Join(mnt, "alice"), filepath.Join(mnt, tool.name)
	tool.restore(t, src, dst)
	requireSameTree(t, "restored "+tool.name, want, scanTree(t, dst), tool.opt)
	// Backing up only reads: the source is unchanged.
	requireSameTree(t, "source after "+tool.name, want, scanTree(t, src), treecmp.Options{})
	m.Stop(t)
	harness.Run(t, "fsck", store)
	requireRestoredAsMessages(t, source, before, readStats(t, store))
	// A new mount starts with empty kernel caches: the restored tree must
	// read the same from packdir's index alone.
	m = harness.Start(t, store, mnt)
	requireSameTree(t, "restored "+tool.name+" after a remount", want, scanTree(t, dst), tool.opt)
	m.Stop(t)
}

// rsyncUpdate changes the source as a week of mail does, then brings the
// rsync subtest's restore up to date with rsync -aH --delete, as a nightly
// mirror does: the update replaces, renames and deletes files and links
// in the restored tree, rather than only creating them.
func rsyncUpdate(t *testing.T, store, mnt string, src backupSource, dst string) {
	m := harness.Start(t, store, mnt)
	if _, err := os.Stat(dst); err != nil {
		t.Skipf("needs the rsync subtest's restore: %v", err)
	}
	src.update()
	want := scanTree(t, src.root)
	args := []string{"-aH", "--delete", "--numeric-ids", rsyncExact, src.root + "/", dst + "/"}
	took := toolRun{t: t}.run("rsync", args...)
	t.Logf("measured: rsync -aH --delete --numeric-ids %s SRC/ DST/ after the update: %v", rsyncExact, took)
	requireSameTree(t, "rsync -aH --delete after the update", want, scanTree(t, dst), treecmp.Options{})
	requireRsyncNoop(t, args)
	m.Stop(t)
	harness.Run(t, "fsck", store)
	m = harness.Start(t, store, mnt)
	requireSameTree(t, "rsync -aH --delete after the update and a remount", want, scanTree(t, dst), treecmp.Options{})
	m.Stop(t)
}

// localDiskBaseline copies the source out of the mount onto the local disk
// (TMPDIR) with rsync -aH, which must keep everything too, then runs the
// same tar and rsync restores disk to disk: their times, logged beside the
// mount's, say what packdir costs.
func localDiskBaseline(t *testing.T, store, mnt string, want treecmp.Tree) {
	m := harness.Start(t, store, mnt)
	local := filepath.Join(t.TempDir(), "alice")
	took := toolRun{t: t}.run("rsync", "-aH", "--numeric-ids", rsyncExact, filepath.Join(mnt, "alice")+"/", local+"/")
	t.Logf("measured: rsync -aH --numeric-ids %s MOUNT/alice/ LOCAL/: %v", rsyncExact, took)
	m.Stop(t)
	requireSameTree(t, "copied to the local disk", want, scanTree(t, local), treecmp.Options{})
	for _, tool := range backupTools() {
		if tool.name == "tar" || tool.name == "rsync" {
			dst := t.TempDir()
			tool.restore(t, local, dst)
			requireSameTree(t, "local disk to local disk by "+tool.name, want, scanTree(t, dst), tool.opt)
		}
	}
}

func backupTools() []backupTool {
	return []backupTool{
		// GNU tar's default format (gnu) stores whole seconds, and -p
		// restores them with .0; the root is in the archive as "./".
		{name: "tar", opt: treecmp.Options{MtimeResolution: time.Second},
			restore: func(t *testing.T, src, dst string) { tarRestore(t, src, dst, 1) }},
		// The POSIX (pax) format stores mtimes to the nanosecond. The
		// archive is extracted twice, as when a restore is run again: the
		// second time tar replaces every file and hard link that exists.
		{name: "tarposix", restore: func(t *testing.T, src, dst string) { tarRestore(t, src, dst, 2, "--format=posix") }},
		{name: "rsync", restore: rsyncRestore},
		// restic 0.14 has no SNAPSHOT:SUBFOLDER restore, so the snapshot
		// is of "." in the source: its contents are the snapshot's root,
		// and the root directory's own metadata is kept nowhere.
		{name: "restic", opt: treecmp.Options{IgnoreMtime: []string{"."}}, restore: resticRestore},
	}
}

// addBackupUser adds an empty user, owned by backupUID, while the store is
// not mounted.
func addBackupUser(t *testing.T, store, name string) {
	t.Helper()
	harness.Run(t, "user", "add", "--uid", backupUID, "--gid", backupGID, name, store)
}

// tarRestore archives src and extracts the archive into dst, extractions
// times.
func tarRestore(t *testing.T, src, dst string, extractions int, format ...string) {
	archive := filepath.Join(t.TempDir(), "alice.tar")
	create := append(append([]string{}, format...), "-C", src, "-cf", archive, ".")
	tools := toolRun{t: t}
	took := tools.run("tar", create...)
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("measured: tar %s: %v (%d bytes)", strings.Join(append(format, "-C SRC -cf ARCHIVE ."), " "), took, fi.Size())
	for i := 1; i <= extractions; i++ {
		took = tools.run("tar", "-C", dst, "-xpf", archive)
		t.Logf("measured: tar -C DST -xpf ARCHIVE (%d of %d): %v", i, extractions, took)
	}
}

// rsyncExact makes rsync compare mtimes to the nanosecond. By default
// (--modify-window=0) rsync compares whole seconds, in its quick check and
// before it sets a directory's mtime, on any filesystem: a directory of
// the empty target user whose mtime falls in the same second as the
// source's keeps its own nanoseconds, and so does one rsync creates and
// fills within the second. With -@-1 the restore is exact, and the second
// run below proves the nanoseconds stable.
const rsyncExact = "--modify-window=-1"

// rsyncRestore copies mount to mount, then runs rsync again: the second
// run must find nothing to transfer or change, which holds only if packdir
// keeps the sizes and mtimes rsync set (files and directories).
func rsyncRestore(t *testing.T, src, dst string) {
	args := []string{"-aH", "--numeric-ids", rsyncExact, src + "/", dst + "/"}
	took := toolRun{t: t}.run("rsync", args...)
	t.Logf("measured: rsync -aH --numeric-ids %s SRC/ DST/: %v", rsyncExact, took)
	requireRsyncNoop(t, args)
}

// requireRsyncNoop runs rsync with args again and requires it to find
// nothing to transfer or change.
func requireRsyncNoop(t *testing.T, args []string) {
	t.Helper()
	out := toolRun{t: t}.output("rsync", append([]string{"--itemize-changes", "--stats"}, args...)...)
	changes, stats, ok := strings.Cut(out, "\nNumber of files:")
	if !ok {
		t.Fatalf("second rsync: no --stats in its output:\n%s", out)
	}
	if strings.TrimSpace(changes) != "" {
		t.Errorf("second rsync -aH changed things (itemized):\n%s", firstLines(changes, 40))
	}
	if n := rsyncStat(t, stats, "Number of regular files transferred"); n != 0 {
		t.Errorf("second rsync -aH transferred %d files, want 0", n)
	}
}

// rsyncStat returns a number from rsync --stats ("Number of ...: 1,234").
func rsyncStat(t *testing.T, stats, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: ([0-9,]+)`).FindStringSubmatch(stats)
	if m == nil {
		t.Fatalf("rsync --stats has no %q:\n%s", name, stats)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func resticRestore(t *testing.T, src, dst string) {
	tmp := t.TempDir()
	restic := toolRun{t: t, env: []string{
		"RESTIC_REPOSITORY=" + filepath.Join(tmp, "repo"),
		"RESTIC_PASSWORD=packdir-test",
		"RESTIC_CACHE_DIR=" + filepath.Join(tmp, "cache"),
	}}
	restic.run("restic", "init")
	restic.dir = src
	took := restic.run("restic", "backup", ".")
	t.Logf("measured: restic backup .: %v", took)
	restic.dir = ""
	took = restic.run("restic", "restore", "latest", "--target", dst)
	t.Logf("measured: restic restore latest --target DST: %v", took)
}

// toolRun runs the backup programs, with extra environment variables and
// in a working directory if set, and fails the test if one fails.
type toolRun struct {
	t   *testing.T
	env []string
	dir string
}

// run runs a program and returns how long it ran.
func (r toolRun) run(name string, args ...string) time.Duration {
	r.t.Helper()
	cmd := r.command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, firstLines(string(out), 40))
	}
	return took
}

// output runs a program and returns its standard output.
func (r toolRun) output(name string, args ...string) string {
	r.t.Helper()
	cmd := r.command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func (r toolRun) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Dir = r.dir
	return cmd
}

func scanTree(t *testing.T, root string) treecmp.Tree {
	t.Helper()
	tree, err := treecmp.Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func requireSameTree(t *testing.T, what string, want, got treecmp.Tree, opt treecmp.Options) {
	t.Helper()
	if d := treecmp.Diff(want, got, opt); len(d) > 0 {
		t.Errorf("%s: %d differences from the original:\n%s", what, len(d), firstLines(strings.Join(d, "\n"), 40))
	}
}

// requireLivedIn checks that packdir kept, in the source tree, what
// fill made: without it a restore could match a source that lost it.
func requireLivedIn(t *testing.T, tree treecmp.Tree) {
	t.Helper()
	var threeLinks, readOnly, mailGroup bool
	for _, e := range tree {
		threeLinks = threeLinks || (e.Nlink == 3 && strings.Count(e.Links, " + ") == 2)
		readOnly = readOnly || (e.Type == 0 && e.Perm == 0o444)
		mailGroup = mailGroup || e.GID == backupMailGID
	}
	if !threeLinks || !readOnly || !mailGroup {
		t.Errorf("source tree: a file with three names %v, a 0444 file %v, a file of group %d %v; want all",
			threeLinks, readOnly, backupMailGID, mailGroup)
	}
	if e := tree[".Trash/cur"]; !e.Mtime.Equal(oldDir) {
		t.Errorf("source tree: .Trash/cur mtime %v, want %v", e.Mtime, oldDir)
	}
	if e := tree["subscriptions"]; !e.Mtime.Equal(oldSide) {
		t.Errorf("source tree: subscriptions mtime %v, want %v", e.Mtime, oldSide)
	}
	if e := tree[".Sent"]; e.Target != ".Outbox" || !e.Mtime.Equal(oldDir) {
		t.Errorf("source tree: .Sent is a symlink to %q with mtime %v, want .Outbox and %v", e.Target, e.Mtime, oldDir)
	}
}

// storeStats is what `packdir stats --json` says of the store's files.
type storeStats struct {
	Messages     int `json:"messages"`
	Payloads     int `json:"payloads"`
	SpooledFiles int `json:"spooled_files"`
}

func readStats(t *testing.T, store string) storeStats {
	t.Helper()
	var st storeStats
	out := harness.Run(t, "stats", "--json", store)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("packdir stats --json: %v\n%s", err, out)
	}
	return st
}

// requireRestoredAsMessages checks that the restored user (what the store
// holds after, less what it held before the user was added) is stored as
// the source user is, alone in the store: the same number of messages
// sealed into the containers (a message left spooled would cost a file on
// disk each) and of spooled side files, and no new payloads (the same
// bytes are stored once).
func requireRestoredAsMessages(t *testing.T, source, before, after storeStats) {
	t.Helper()
	if got := after.Messages - before.Messages; got != source.Messages {
		t.Errorf("the restored user has %d messages in the store, want the source's %d", got, source.Messages)
	}
	if got := after.SpooledFiles - before.SpooledFiles; got != source.SpooledFiles {
		t.Errorf("the restored user has %d spooled files in the store, want the source's %d", got, source.SpooledFiles)
	}
	if after.Payloads != source.Payloads {
		t.Errorf("the store holds %d payloads after the restore, want the source's %d (identical messages are stored once)",
			after.Payloads, source.Payloads)
	}
}

// describeTree counts what a tree holds, for the log.
func describeTree(tree treecmp.Tree) string {
	var dirs, files, linked int
	var bytes int64
	for _, e := range tree {
		switch {
		case e.Type.IsDir():
			dirs++
		case e.Type == 0:
			files++
			bytes += e.Size
			if e.Links != "" {
				linked++
			}
		}
	}
	return fmt.Sprintf("%d directories, %d files (%d bytes), %d of them hard links", dirs, files, bytes, linked)
}

// Past mtimes given to some messages, side files and directories: with
// nanoseconds, so that a tool or filesystem that drops them shows.
var (
	oldMessage = time.Date(2002, 8, 23, 11, 4, 5, 123456789, time.UTC)
	oldSide    = time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	oldDir     = time.Date(2010, 1, 2, 3, 4, 5, 600000007, time.UTC)
)

// backupSource fills a user's tree with messages from the corpus so that
// it looks lived in.
type backupSource struct {
	t      *testing.T
	root   string
	corpus string // the SpamAssassin Maildir++ tree
}

func (b backupSource) fill() {
	b.t.Helper()
	b.folder(".Lists.golang")
	b.deliver("new", b.messages(".easy_ham", 0, 60), "")
	inbox := b.deliver("cur", b.messages(".easy_ham", 60, 180), "")
	b.deliver(".Trash/cur", b.messages(".spam", 0, 40), "T")
	lists := b.deliver(".Lists.golang/cur", b.messages(".hard_ham", 0, 60), "")
	b.deliver(".Lists.golang/new", b.messages(".hard_ham", 60, 70), "")
	b.deliver(".Draft/cur", b.messages(".easy_ham_2", 0, 2), "D")
	b.linkAll(inbox[:8])
	b.deliverAttachment(".Lists.golang/cur/1733339000.M3P4.host:2,S")
	b.sideFiles()
	for i, path := range append(inbox, lists...) {
		if i%7 == 0 {
			b.chtimes(path, oldMessage.Add(time.Duration(i)*time.Hour))
		}
	}
	b.chmod(inbox[1], 0o640)
	b.chmod(lists[2], 0o444)
	b.chmod(filepath.Join(b.root, ".Lists.golang"), 0o750)
	// A file the mail group may read (Dovecot's mail_access_groups): its
	// owner differs from the tree's, so the compare sees whether the
	// restore kept owners.
	if err := os.Lchown(filepath.Join(b.root, "dovecot.index.log"), 1001, backupMailGID); err != nil {
		b.t.Fatal(err)
	}
	// Last, as every change inside a directory bumps its mtime.
	b.chtimes(filepath.Join(b.root, ".Trash/cur"), oldDir)
	b.chtimes(filepath.Join(b.root, ".Lists.golang"), oldDir.Add(time.Minute))
	b.chtimes(b.root, oldDir.Add(time.Hour))
}

// folder makes a Maildir++ folder as an MUA does.
func (b backupSource) folder(name string) {
	b.t.Helper()
	dir := filepath.Join(b.root, name)
	for _, sub := range []string{"", "tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			b.t.Fatal(err)
		}
	}
	b.write(filepath.Join(dir, "maildirfolder"), nil, 0o600)
}

// messages returns the paths of the messages from..to (in name order) of
// a corpus folder's cur/.
func (b backupSource) messages(folder string, from, to int) []string {
	b.t.Helper()
	dir := filepath.Join(b.corpus, folder, "cur")
	names := readNames(b.t, dir)
	sort.Strings(names)
	if len(names) < to {
		b.t.Fatalf("%s has %d messages, want at least %d", dir, len(names), to)
	}
	paths := make([]string, 0, to-from)
	for _, name := range names[from:to] {
		paths = append(paths, filepath.Join(dir, name))
	}
	return paths
}

// deliver delivers each message as an MDA does (write in tmp/, rename
// into dir) and returns the new paths. Messages in cur/ get flags, from a
// rotating set plus the extra ones.
func (b backupSource) deliver(dir string, msgs []string, extra string) []string {
	b.t.Helper()
	flagSets := []string{"S", "RS", "FS", "", "PS"}
	var paths []string
	for i, msg := range msgs {
		base, _, _ := strings.Cut(filepath.Base(msg), ":")
		name := base
		if filepath.Base(dir) == "cur" {
			name += ":2," + sortedFlags(flagSets[i%len(flagSets)]+extra)
		}
		data, err := os.ReadFile(msg)
		if err != nil {
			b.t.Fatal(err)
		}
		tmp := filepath.Join(b.root, filepath.Dir(dir), "tmp", base)
		b.write(tmp, data, 0o600)
		path := filepath.Join(b.root, dir, name)
		if err := os.Rename(tmp, path); err != nil {
			b.t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

func sortedFlags(flags string) string {
	f := []byte(flags)
	sort.Slice(f, func(i, j int) bool { return f[i] < f[j] })
	return string(f)
}

// update changes the tree as a week of mail does: an MUA reads new mail
// (new/ to cur/), changes flags (one name of a hard-linked message),
// moves messages to a folder, rewrites a hard-linked message in place,
// expunges from .Trash (one name of a hard-linked message), new mail
// arrives, Dovecot rewrites its index, and a folder is made.
func (b backupSource) update() {
	b.t.Helper()
	cur := b.names("cur")
	b.rewrite(filepath.Join(b.root, "cur", cur[1]))
	for _, name := range b.names("new")[:10] {
		b.rename("new/"+name, "cur/"+name+":2,S")
	}
	for _, name := range cur[:10] {
		base, flags, _ := strings.Cut(name, ":2,")
		if strings.Contains(flags, "F") {
			flags = strings.ReplaceAll(flags, "F", "")
		} else {
			flags = sortedFlags(flags + "F")
		}
		b.rename("cur/"+name, "cur/"+base+":2,"+flags)
	}
	for _, name := range cur[10:13] {
		b.rename("cur/"+name, ".Lists.golang/cur/"+name)
	}
	trash := b.names(".Trash/cur")
	for _, name := range append(trash[:4], trash[len(trash)-1]) {
		if err := os.Remove(filepath.Join(b.root, ".Trash/cur", name)); err != nil {
			b.t.Fatal(err)
		}
	}
	b.deliver("new", b.messages(".easy_ham", 180, 185), "")
	b.write(filepath.Join(b.root, "dovecot.index"), binaryContent("index, a week later", 44<<10), 0o600)
	b.folder(".Lists.rust")
}

// rewrite opens a message for writing and replaces its bytes, as an MUA
// editing a message in place would: every name of it sees the new bytes.
func (b backupSource) rewrite(path string) {
	b.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.Write(append([]byte("X-Label: rewritten\n"), data...))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		b.t.Fatalf("rewriting %s: %v", path, err)
	}
}

// names lists a directory of the tree in name order.
func (b backupSource) names(dir string) []string {
	b.t.Helper()
	names := readNames(b.t, filepath.Join(b.root, dir))
	sort.Strings(names)
	return names
}

func (b backupSource) rename(from, to string) {
	b.t.Helper()
	if err := os.Rename(filepath.Join(b.root, from), filepath.Join(b.root, to)); err != nil {
		b.t.Fatal(err)
	}
}

// deliverAttachment delivers a message with a 3 MiB attachment, so that
// a message needs several writes and (for restic) several chunks.
func (b backupSource) deliverAttachment(name string) {
	b.t.Helper()
	var msg bytes.Buffer
	msg.WriteString("From: alice@example.org\nTo: golang-nuts@example.org\nSubject: core dump\n" +
		"Message-ID: <core.1733339000@example.org>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nAttached.\n" +
		"--b1\nContent-Type: application/octet-stream; name=core\nContent-Transfer-Encoding: base64\n\n")
	enc := base64.StdEncoding.EncodeToString(binaryContent("core", 3<<20))
	for len(enc) > 76 {
		msg.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	msg.WriteString(enc + "\n--b1--\n")
	base, _, _ := strings.Cut(filepath.Base(name), ":")
	tmp := filepath.Join(b.root, filepath.Dir(filepath.Dir(name)), "tmp", base)
	b.write(tmp, msg.Bytes(), 0o600)
	b.rename(strings.TrimPrefix(tmp, b.root+"/"), name)
}

// linkAll gives each message a second name in .Lists.golang/cur (as
// Dovecot's COPY does), and the first two a third one in .Trash/cur with
// the T flag.
func (b backupSource) linkAll(msgs []string) {
	b.t.Helper()
	for i, msg := range msgs {
		name := filepath.Base(msg)
		b.link(msg, filepath.Join(b.root, ".Lists.golang/cur", name))
		if i < 2 {
			base, _, _ := strings.Cut(name, ":")
			b.link(msg, filepath.Join(b.root, ".Trash/cur", base+":2,ST"))
		}
	}
}

// sideFiles writes what Dovecot and an MUA keep beside the messages: text
// and binary, and one file in tmp/ as if a delivery were under way.
func (b backupSource) sideFiles() {
	b.t.Helper()
	b.write(filepath.Join(b.root, "dovecot-uidlist"), []byte("3 V1733338000 N301 G0123456789abcdef\n1 :1030019783.M000001P0Q7c53\n"), 0o600)
	b.write(filepath.Join(b.root, "subscriptions"), []byte("Lists.golang\nTrash\n"), 0o644)
	b.write(filepath.Join(b.root, "dovecot.index"), binaryContent("index", 40<<10), 0o600)
	b.write(filepath.Join(b.root, "dovecot.index.log"), binaryContent("log", 8<<10+17), 0o600)
	// Larger than one FUSE write (1 MiB) and than one restic chunk.
	b.write(filepath.Join(b.root, "dovecot.index.cache"), binaryContent("cache", 3<<20+123), 0o600)
	b.write(filepath.Join(b.root, ".Lists.golang/dovecot-uidlist"), []byte("3 V1733338001 N61\n"), 0o600)
	b.write(filepath.Join(b.root, "tmp/1733338999.M1P2.host"), []byte("From: half\n"), 0o600)
	b.chtimes(filepath.Join(b.root, "subscriptions"), oldSide)
	b.chtimes(filepath.Join(b.root, "dovecot.index"), oldSide.Add(time.Second))
	// A folder alias, as some set-ups make for an MUA's "Sent": backup
	// tools keep the link itself, with its own owner and mtime.
	b.symlink(".Outbox", filepath.Join(b.root, ".Sent"))
}

// binaryContent returns n bytes derived from seed, zero bytes included,
// like a Dovecot index.
func binaryContent(seed string, n int) []byte {
	var out []byte
	sum := sha256.Sum256([]byte(seed))
	for len(out) < n {
		out = append(out, sum[:]...)
		out = append(out, 0, 0, 0, 1)
		sum = sha256.Sum256(sum[:])
	}
	return out[:n]
}

func (b backupSource) write(path string, data []byte, perm os.FileMode) {
	b.t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		b.t.Fatal(err)
	}
}

func (b backupSource) link(oldname, newname string) {
	b.t.Helper()
	if err := os.Link(oldname, newname); err != nil {
		b.t.Fatal(err)
	}
}

// symlink makes a symbolic link with an old mtime of its own.
func (b backupSource) symlink(target, path string) {
	b.t.Helper()
	if err := os.Symlink(target, path); err != nil {
		b.t.Fatal(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(oldSide.UnixNano()), unix.NsecToTimespec(oldDir.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		b.t.Fatalf("utimensat(%s, AT_SYMLINK_NOFOLLOW): %v", path, err)
	}
}

func (b backupSource) chtimes(path string, mtime time.Time) {
	b.t.Helper()
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		b.t.Fatal(err)
	}
}

func (b backupSource) chmod(path string, mode os.FileMode) {
	b.t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		b.t.Fatal(err)
	}
}
