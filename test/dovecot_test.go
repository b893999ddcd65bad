package test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestDovecotIMAP serves a packdir mount with Dovecot, as a mail server
// would, and drives it over IMAP: folders, a delivery by dovecot-lda,
// APPEND of corpus messages, FETCH byte for byte, flags, COPY, MOVE,
// EXPUNGE, RENAME and DELETE, each checked on disk through the mount.
// Then a new Dovecot on a remounted store must find the same UIDs,
// UIDVALIDITY, flags and bytes, before and after `doveadm force-resync`,
// with nothing in its log above Info, and fsck must find the store sound.
func TestDovecotIMAP(t *testing.T) {
	m, d := dovecotOnPackdir(t)
	msgs := dovecotCorpus(t)
	c := d.login(t)

	createFolders(t, c, d.maildir)
	deliverLDA(t, c, d, msgs[5])
	uids := appendCorpus(t, c, d.maildir, msgs)
	fetchCorpus(t, c, uids, msgs)
	storeFlags(t, c, d.maildir, uids)
	copyHardLink(t, c, d.maildir, uids[2])
	moveMessage(t, c, d.maildir, uids[4], msgs[4])
	expungeDeleted(t, c, d.maildir, uids[3], len(msgs)-2)
	renameAndDelete(t, c, d.maildir, msgs[4])
	c.run("LOGOUT")

	before := snapshot(t, d.login(t))
	d.stop(t)
	m.Restart(t)
	d.start(t)
	requireSameState(t, "after a remount and a new Dovecot", before, snapshot(t, d.login(t)))
	d.doveadm(t, "force-resync", "-u", mailUser, "*")
	requireSameState(t, "after doveadm force-resync", before, snapshot(t, d.login(t)))

	requireEmptyDir(t, d.home())
	d.stop(t)
	m.Stop(t)
	harness.Run(t, "fsck", m.Store)
}

// TestDovecotSessions has two sessions on one mailbox: a message the one
// APPENDs reaches the other in IDLE as EXISTS, and then the other way round,
// at a NOOP. A delivery, a flag rename and an unlink made through the mount
// by another program reach a session at its NOOP. Then four sessions APPEND
// and flag messages in INBOX at once, each its own, which takes Dovecot's
// fcntl locks on the index and its shared mmaps of it across processes:
// every message must end up under one UID with its flag and its bytes.
// Last, four sessions set and clear a flag each on the same messages at
// once, and only the flag none of them touched may remain.
func TestDovecotSessions(t *testing.T) {
	_, d := dovecotOnPackdir(t)
	msgs := dovecotCorpus(t)
	idler, writer := d.login(t), d.login(t)
	if _, n := idler.selectBox("INBOX"); n != 0 {
		t.Fatalf("a new INBOX holds %d messages", n)
	}
	tag := idler.begin("IDLE")
	idler.continuation("IDLE")
	writer.appendMsg("INBOX", "", crlf(msgs[5].raw))
	idler.waitFor("* 1 EXISTS")
	idler.write([]byte("DONE\r\n"))
	if _, status := idler.finish(tag); !strings.HasPrefix(status, "OK") {
		t.Fatalf("IDLE: %s", status)
	}

	if _, n := writer.selectBox("INBOX"); n != 1 {
		t.Fatalf("the writer's SELECT INBOX: %d messages, want 1", n)
	}
	idler.appendMsg("INBOX", "", crlf(msgs[6].raw))
	if untagged, _ := writer.ok("NOOP"); !hasResponse(untagged, "* 2 EXISTS") {
		t.Errorf("NOOP after the other session's APPEND: %q, want * 2 EXISTS", texts(untagged))
	}

	thirdPartyChanges(t, writer, d.maildir, msgs[7])
	appended := concurrentAppends(t, d, lfOnlyHam(t, 80), 4)
	if _, n := writer.selectBox("INBOX"); n != 2+len(appended) {
		t.Errorf("INBOX holds %d messages after the concurrent APPENDs, want %d", n, 2+len(appended))
	}
	got := writer.fetch("1:*", true)
	for uid, msg := range appended {
		if !slices.Equal(got[uid].flags, []string{`\Flagged`}) || !bytes.Equal(got[uid].body, crlf(msg.raw)) {
			t.Errorf("UID %d (%s): FLAGS %q and %d bytes, want \\Flagged and the %d appended",
				uid, msg.name, got[uid].flags, len(got[uid].body), len(crlf(msg.raw)))
		}
	}

	concurrentFlags(t, d, []string{`\Seen`, `\Answered`, `\Draft`, `$Label1`}, uint32(2+len(appended)))
	for uid, msg := range writer.fetch("1:*", false) {
		if _, ours := appended[uid]; ours && !slices.Equal(msg.flags, []string{`\Flagged`}) {
			t.Errorf("UID %d: FLAGS %q after every session set and cleared its flag, want \\Flagged", uid, msg.flags)
		}
	}
}

// concurrentFlags runs one IMAP session per flag at once, each setting its
// flag on the messages of INBOX up to UID last, ten at a time, and then
// clearing it again, three times over, so that several Dovecot processes
// rename the same files in cur/ at the same time, each finding names the
// others changed.
func concurrentFlags(t *testing.T, d *dovecotServer, flags []string, last uint32) {
	t.Helper()
	t.Run("flaggers", func(t *testing.T) {
		for _, flag := range flags {
			t.Run(flag, func(t *testing.T) {
				t.Parallel()
				c := d.login(t)
				c.selectBox("INBOX")
				for _, op := range slices.Repeat([]string{"+FLAGS.SILENT", "-FLAGS.SILENT"}, 3) {
					for uid := uint32(1); uid <= last; uid += 10 {
						c.ok("UID STORE %d:%d %s (%s)", uid, uid+9, op, flag)
						c.ok("NOOP")
					}
				}
			})
		}
	})
}

// thirdPartyChanges changes a folder through the mount while a session
// has it selected, as an MDA and a MUA beside Dovecot would: a delivery
// into new/, a flag rename in cur/, an unlink. Dovecot finds each by the
// directories' mtimes and must report it at the next NOOP.
func thirdPartyChanges(t *testing.T, c *imapClient, maildir string, msg dovecotMessage) {
	t.Helper()
	c.ok("CREATE Outside")
	if _, n := c.selectBox("Outside"); n != 0 {
		t.Fatalf("a new folder holds %d messages", n)
	}
	folder := filepath.Join(maildir, ".Outside")
	name := "1796400000.M1P1.packdir-test"
	tmp := filepath.Join(folder, "tmp", name)
	if err := os.WriteFile(tmp, msg.raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(folder, "new", name)); err != nil {
		t.Fatal(err)
	}
	if untagged, _ := c.ok("NOOP"); !hasResponse(untagged, "* 1 EXISTS") {
		t.Fatalf("NOOP after a delivery into new/: %q, want * 1 EXISTS", texts(untagged))
	}
	if got := c.fetch("1", true)[1]; !bytes.Equal(got.body, crlf(msg.raw)) {
		t.Errorf("the delivered message reads %d bytes that differ from the %d delivered", len(got.body), len(crlf(msg.raw)))
	}

	flagged := filepath.Join(folder, "cur", name+":2,F")
	if err := os.Rename(findMessage(t, folder, name), flagged); err != nil {
		t.Fatal(err)
	}
	untagged, _ := c.ok("NOOP")
	if fl := fetchedFlags(t, untagged, 1); !slices.Equal(fl, []string{`\Flagged`}) {
		t.Errorf("NOOP after a rename to :2,F: FLAGS %q in %q, want \\Flagged", fl, texts(untagged))
	}

	if err := os.Remove(flagged); err != nil {
		t.Fatal(err)
	}
	if untagged, _ := c.ok("NOOP"); !hasResponse(untagged, "* 1 EXPUNGE") {
		t.Errorf("NOOP after an unlink: %q, want * 1 EXPUNGE", texts(untagged))
	}
}

// fetchedFlags returns the flags of the untagged FETCH for message seq
// among responses, or nil if there is none.
func fetchedFlags(t *testing.T, untagged []imapResp, seq int) []string {
	t.Helper()
	prefix := fmt.Sprintf("* %d FETCH (", seq)
	for _, r := range untagged {
		if strings.HasPrefix(r.text, prefix) {
			if m := fetchFlags.FindStringSubmatch(r.text); m != nil {
				return normalFlags(m[1])
			}
		}
	}
	return nil
}

// concurrentAppends runs sessions IMAP sessions at once, each APPENDing its
// share of msgs to INBOX and flagging every message it appended, with a
// NOOP after each to see the others' changes, and returns the messages by
// UID. A UID given twice fails the test.
func concurrentAppends(t *testing.T, d *dovecotServer, msgs []dovecotMessage, sessions int) map[uint32]dovecotMessage {
	t.Helper()
	var mu sync.Mutex
	byUID := make(map[uint32]dovecotMessage)
	t.Run("appenders", func(t *testing.T) {
		for s := range sessions {
			t.Run(fmt.Sprint(s), func(t *testing.T) {
				t.Parallel()
				c := d.login(t)
				c.selectBox("INBOX")
				for i := s; i < len(msgs); i += sessions {
					_, uid := c.appendMsg("INBOX", "", crlf(msgs[i].raw))
					c.ok(`UID STORE %d +FLAGS (\Flagged)`, uid)
					c.ok("NOOP")
					mu.Lock()
					if prev, dup := byUID[uid]; dup {
						t.Errorf("UID %d given to %s and %s", uid, prev.name, msgs[i].name)
					}
					byUID[uid] = msgs[i]
					mu.Unlock()
				}
			})
		}
	})
	return byUID
}

// TestDovecotIndexFiles gives Dovecot enough mail that it writes and
// mmaps its main index and a cache of some size: 200 messages APPENDed to
// one folder, fetched whole and as ENVELOPE and BODYSTRUCTURE, half of them
// flagged, a quarter expunged. The mount runs with --durability full, so
// that a crash loses nothing that was done: with Dovecot stopped, packdir
// is killed with SIGKILL and mounted again, and a new Dovecot must find
// every UID, flag and byte, and force-resync nothing amiss.
func TestDovecotIndexFiles(t *testing.T) {
	m, d := dovecotOnPackdir(t, "--durability", "full")
	msgs := lfOnlyHam(t, 200)
	c := d.login(t)
	c.ok("CREATE Bulk")
	for _, msg := range msgs {
		c.appendMsg("Bulk", "", crlf(msg.raw))
	}
	c.selectBox("Bulk")
	fetched := c.fetch("1:*", true)
	for i, msg := range msgs {
		if !bytes.Equal(fetched[uint32(i+1)].body, crlf(msg.raw)) {
			t.Errorf("Bulk UID %d (%s): FETCH BODY[] differs from what was appended", i+1, msg.name)
		}
	}
	c.ok("UID FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
	c.ok(`UID STORE 1:100 +FLAGS (\Seen)`)
	c.ok(`UID STORE 51:150 +FLAGS (\Flagged)`)
	c.ok(`UID STORE 101:150 +FLAGS (\Deleted)`)
	c.ok("EXPUNGE")
	c.run("LOGOUT")

	bulk := filepath.Join(d.maildir, ".Bulk")
	requireFile(t, filepath.Join(bulk, "dovecot.index"))
	if n := len(readNames(t, filepath.Join(bulk, "cur"))) + len(readNames(t, filepath.Join(bulk, "new"))); n != 150 {
		t.Errorf(".Bulk holds %d messages on disk after EXPUNGE, want 150", n)
	}
	before := snapshot(t, d.login(t))
	d.stop(t)
	m.Kill(t)
	m.Restart(t)
	d.start(t)
	requireSameState(t, "after packdir was killed and mounted again", before, snapshot(t, d.login(t)))
	d.doveadm(t, "force-resync", "-u", mailUser, "Bulk")
	requireSameState(t, "after doveadm force-resync", before, snapshot(t, d.login(t)))
	d.stop(t)
	m.Stop(t)
	harness.Run(t, "fsck", m.Store)
}

// createFolders checks the default folders, then CREATEs Lists.golang,
// Work, Work.Projects, "Old mail" and Entwürfe (modified UTF-7 on the
// wire and on disk), which must appear as Maildir++ folders, and
// SUBSCRIBEs to two of them, which Dovecot keeps in the Maildir's
// subscriptions file.
func createFolders(t *testing.T, c *imapClient, maildir string) {
	t.Helper()
	if got, want := c.listMailboxes(), []string{"Draft", "INBOX", "Outbox", "Trash"}; !slices.Equal(got, want) {
		t.Errorf("LIST on a new tree: %q, want %q", got, want)
	}
	for _, box := range []string{"Lists.golang", "Work", "Work.Projects", "Old mail", "Entw&APw-rfe"} {
		c.ok("CREATE %s", imapQuote(box))
		requireFile(t, filepath.Join(maildir, "."+box, "maildirfolder"))
		for _, sub := range []string{"tmp", "new", "cur"} {
			requireDir(t, filepath.Join(maildir, "."+box, sub))
		}
	}
	want := []string{"Draft", "Entw&APw-rfe", "INBOX", "Lists.golang", "Old mail", "Outbox", "Trash", "Work", "Work.Projects"}
	if got := c.listMailboxes(); !slices.Equal(got, want) {
		t.Errorf("LIST after CREATE: %q, want %q", got, want)
	}
	c.ok(`SUBSCRIBE "Old mail"`)
	c.ok(`SUBSCRIBE "Entw&APw-rfe"`)
	untagged, _ := c.ok(`LSUB "" "*"`)
	if !hasResponse(untagged, `* LSUB () "." "Old mail"`) || !hasResponse(untagged, `* LSUB () "." Entw&APw-rfe`) {
		t.Errorf("LSUB after SUBSCRIBE: %q", texts(untagged))
	}
	requireFile(t, filepath.Join(maildir, "subscriptions"))
}

// deliverLDA delivers a message into Lists.golang with dovecot-lda, as
// the first of the folder: the file in the folder must be the corpus file
// byte for byte, and IMAP must serve it.
func deliverLDA(t *testing.T, c *imapClient, d *dovecotServer, msg dovecotMessage) {
	t.Helper()
	d.deliver(t, "Lists.golang", msg.raw)
	requireBytes(t, requireMessage(t, filepath.Join(d.maildir, ".Lists.golang"), 1), msg)
	if _, n := c.examineBox("Lists.golang"); n != 1 {
		t.Fatalf("Lists.golang holds %d messages after a delivery, want 1", n)
	}
	if got := c.fetch("1", true)[1]; !bytes.Equal(got.body, crlf(msg.raw)) {
		t.Errorf("the message dovecot-lda delivered reads %d bytes over IMAP, want the %d delivered", len(got.body), len(crlf(msg.raw)))
	}
}

// appendCorpus APPENDs the messages to INBOX, the first one \Seen, and
// returns their UIDs. Dovecot stores a message with Unix line ends, so the
// file in the mount must be the corpus file byte for byte: in cur/ with
// :2,S for the \Seen one, in new/ under its plain name for the others.
func appendCorpus(t *testing.T, c *imapClient, maildir string, msgs []dovecotMessage) []uint32 {
	t.Helper()
	uids := make([]uint32, len(msgs))
	var validity uint32
	for i, msg := range msgs {
		flags := ""
		if i == 0 {
			flags = `\Seen`
		}
		v, uid := c.appendMsg("INBOX", flags, crlf(msg.raw))
		if i > 0 && v != validity {
			t.Errorf("APPENDUID: UIDVALIDITY changed from %d to %d", validity, v)
		}
		validity, uids[i] = v, uid
		path := requireMessage(t, maildir, uid)
		requireBytes(t, path, msg)
		wantDir, wantSuffix := "new", ""
		if i == 0 {
			wantDir, wantSuffix = "cur", ":2,S"
		}
		requireNamed(t, path, wantDir, wantSuffix)
	}
	if v, n := c.selectBox("INBOX"); v != validity || n != len(msgs) {
		t.Errorf("SELECT INBOX: UIDVALIDITY %d, %d messages; want %d, %d", v, n, validity, len(msgs))
	}
	return uids
}

// fetchCorpus FETCHes every message and compares it with what was
// appended, byte for byte.
func fetchCorpus(t *testing.T, c *imapClient, uids []uint32, msgs []dovecotMessage) {
	t.Helper()
	got := c.fetch("1:*", true)
	if len(got) != len(msgs) {
		t.Errorf("UID FETCH 1:* returned %d messages, want %d", len(got), len(msgs))
	}
	for i, uid := range uids {
		if !bytes.Equal(got[uid].body, crlf(msgs[i].raw)) {
			t.Errorf("UID %d (%s): FETCH BODY[] returned %d bytes that differ from the %d appended",
				uid, msgs[i].name, len(got[uid].body), len(crlf(msgs[i].raw)))
		}
	}
	fetchPartial(t, c, uids[0], crlf(msgs[0].raw), 200_000, 50_000)
	fetchPartial(t, c, uids[len(uids)-1], crlf(msgs[len(msgs)-1].raw), 3_000_000, 100_000)
}

// fetchPartial FETCHes BODY[]<offset.n> of a message, which Dovecot serves
// by seeking into the file, and compares it with that slice of want.
func fetchPartial(t *testing.T, c *imapClient, uid uint32, want []byte, offset, n int) {
	t.Helper()
	untagged, _ := c.ok("UID FETCH %d (BODY.PEEK[]<%d.%d>)", uid, offset, n)
	for _, r := range untagged {
		if fetchLine.MatchString(r.text) && len(r.literals) == 1 {
			if !bytes.Equal(r.literals[0], want[offset:offset+n]) {
				t.Errorf("UID %d: BODY[]<%d.%d> differs from those bytes of the message", uid, offset, n)
			}
			return
		}
	}
	t.Errorf("UID %d: no body in the answer to a partial FETCH: %q", uid, texts(untagged))
}

// storeFlags changes flags with STORE and checks that each file was
// renamed into cur/ with the matching :2, suffix, keeping its inode. A
// keyword ($Forwarded) is a lower-case letter that the dovecot-keywords
// file in the Maildir maps back to its name.
func storeFlags(t *testing.T, c *imapClient, maildir string, uids []uint32) {
	t.Helper()
	changes := []struct {
		uid    uint32
		store  string
		suffix string
		flags  []string
	}{
		{uids[0], `+FLAGS (\Answered)`, ":2,RS", []string{`\Answered`, `\Seen`}},
		{uids[1], `+FLAGS (\Seen $Forwarded)`, ":2,Sa", []string{`$Forwarded`, `\Seen`}},
		{uids[2], `+FLAGS (\Seen \Flagged)`, ":2,FS", []string{`\Flagged`, `\Seen`}},
		{uids[3], `+FLAGS (\Seen \Flagged \Deleted)`, ":2,FST", []string{`\Deleted`, `\Flagged`, `\Seen`}},
	}
	for _, ch := range changes {
		ino, _ := inode(t, requireMessage(t, maildir, ch.uid))
		c.ok("UID STORE %d %s", ch.uid, ch.store)
		path := requireMessage(t, maildir, ch.uid)
		requireNamed(t, path, "cur", ch.suffix)
		if after, _ := inode(t, path); after != ino {
			t.Errorf("UID %d: STORE %s changed st_ino from %d to %d", ch.uid, ch.store, ino, after)
		}
	}
	if kw, err := os.ReadFile(filepath.Join(maildir, "dovecot-keywords")); err != nil || !strings.Contains(string(kw), "0 $Forwarded\n") {
		t.Errorf("dovecot-keywords in the Maildir: %q (%v), want it to name keyword 0 (a) $Forwarded", kw, err)
	}
	got := c.fetch("1:*", false)
	for _, ch := range changes {
		if !slices.Equal(got[ch.uid].flags, ch.flags) {
			t.Errorf("UID %d: FLAGS %q after STORE %s, want %q", ch.uid, got[ch.uid].flags, ch.store, ch.flags)
		}
	}
}

// copyHardLink COPYs a message to Lists.golang: Dovecot links the file, so
// both names must be one inode with st_nlink 2, and a flag on one name
// must leave the other as it was.
func copyHardLink(t *testing.T, c *imapClient, maildir string, uid uint32) {
	t.Helper()
	_, status := c.ok("UID COPY %d %s", uid, imapQuote("Lists.golang"))
	_, dstUID, ok := copyUID(t, status)
	if !ok {
		t.Fatalf("UID COPY: %s, want OK [COPYUID ...]", status)
	}
	src := requireMessage(t, maildir, uid)
	dst := requireMessage(t, filepath.Join(maildir, ".Lists.golang"), dstUID)
	srcIno, srcLinks := inode(t, src)
	dstIno, dstLinks := inode(t, dst)
	if srcIno != dstIno || srcLinks != 2 || dstLinks != 2 {
		t.Errorf("COPY: %s is inode %d with %d links, %s inode %d with %d links; want one inode with 2",
			src, srcIno, srcLinks, dst, dstIno, dstLinks)
	}

	// A flag on the copy renames that name only.
	c.ok("SELECT %s", imapQuote("Lists.golang"))
	c.ok(`UID STORE %d +FLAGS (\Answered)`, dstUID)
	renamed := requireMessage(t, filepath.Join(maildir, ".Lists.golang"), dstUID)
	requireNamed(t, renamed, "cur", ":2,FRS")
	if ino, links := inode(t, renamed); ino != srcIno || links != 2 {
		t.Errorf("%s: inode %d with %d links after STORE, want inode %d with 2", renamed, ino, links, srcIno)
	}
	if now := requireMessage(t, maildir, uid); now != src {
		t.Errorf("STORE on the copy renamed the original too: %s is now %s", src, now)
	}
	c.selectBox("INBOX")
}

// moveMessage MOVEs a message to Work.Projects: gone from INBOX on disk,
// the same bytes and inode in the folder, one link left.
func moveMessage(t *testing.T, c *imapClient, maildir string, uid uint32, msg dovecotMessage) {
	t.Helper()
	src := requireMessage(t, maildir, uid)
	ino, _ := inode(t, src)
	untagged, status := c.ok("UID MOVE %d %s", uid, imapQuote("Work.Projects"))
	_, dstUID, ok := copyUID(t, status+" "+strings.Join(texts(untagged), " "))
	if !ok {
		t.Fatalf("UID MOVE: %q %s, want a COPYUID", texts(untagged), status)
	}
	if left := findMessage(t, maildir, uidBase(t, maildir, uid)); left != "" {
		t.Errorf("MOVE left %s in INBOX", left)
	}
	dst := requireMessage(t, filepath.Join(maildir, ".Work.Projects"), dstUID)
	requireBytes(t, dst, msg)
	if dstIno, links := inode(t, dst); dstIno != ino || links != 1 {
		t.Errorf("MOVE: %s is inode %d with %d links, want inode %d with 1", dst, dstIno, links, ino)
	}
}

// expungeDeleted EXPUNGEs the one message flagged \Deleted: its file must
// be gone, and n messages left.
func expungeDeleted(t *testing.T, c *imapClient, maildir string, uid uint32, n int) {
	t.Helper()
	base := uidBase(t, maildir, uid)
	c.ok("EXPUNGE")
	if left := findMessage(t, maildir, base); left != "" {
		t.Errorf("EXPUNGE left %s", left)
	}
	if _, got := c.selectBox("INBOX"); got != n {
		t.Errorf("INBOX holds %d messages after EXPUNGE, want %d", got, n)
	}
}

// renameAndDelete RENAMEs Work, with its child, to Job, then DELETEs both:
// the directories follow on disk.
func renameAndDelete(t *testing.T, c *imapClient, maildir string, moved dovecotMessage) {
	t.Helper()
	c.ok("RENAME Work Job")
	requireAbsent(t, filepath.Join(maildir, ".Work"))
	requireAbsent(t, filepath.Join(maildir, ".Work.Projects"))
	requireFile(t, filepath.Join(maildir, ".Job", "maildirfolder"))
	requireFile(t, filepath.Join(maildir, ".Job.Projects", "maildirfolder"))
	if _, n := c.selectBox("Job.Projects"); n != 1 {
		t.Fatalf("Job.Projects holds %d messages after RENAME, want the moved one", n)
	}
	for _, msg := range c.fetch("1:*", true) {
		if !bytes.Equal(msg.body, crlf(moved.raw)) {
			t.Errorf("Job.Projects: the moved message reads %d different bytes after RENAME", len(msg.body))
		}
	}
	c.ok("CLOSE")
	c.ok("DELETE Job.Projects")
	requireAbsent(t, filepath.Join(maildir, ".Job.Projects"))
	c.ok("DELETE Job")
	requireAbsent(t, filepath.Join(maildir, ".Job"))
	if got, want := c.listMailboxes(), []string{"Draft", "Entw&APw-rfe", "INBOX", "Lists.golang", "Old mail", "Outbox", "Trash"}; !slices.Equal(got, want) {
		t.Errorf("LIST after DELETE: %q, want %q", got, want)
	}
	for _, name := range readNames(t, maildir) {
		if strings.Contains(name, "DOVECOT-TRASHED") {
			t.Errorf("DELETE left %s behind", name)
		}
	}
}

// mailboxState is what a client remembers of a mailbox between sessions.
type mailboxState struct {
	uidValidity uint32
	msgs        map[uint32]imapMessage
}

// snapshot EXAMINEs every mailbox (read-only) and fetches every message
// with flags and body, then logs out.
func snapshot(t *testing.T, c *imapClient) map[string]mailboxState {
	t.Helper()
	state := make(map[string]mailboxState)
	for _, box := range c.listMailboxes() {
		v, _ := c.examineBox(box)
		state[box] = mailboxState{uidValidity: v, msgs: c.fetch("1:*", true)}
	}
	c.run("LOGOUT")
	return state
}

func requireSameState(t *testing.T, when string, want, got map[string]mailboxState) {
	t.Helper()
	if w, g := describeState(want), describeState(got); w != g {
		t.Fatalf("%s, the mailboxes differ:\nbefore:\n%s\nafter:\n%s", when, w, g)
	}
	for box, st := range want {
		for uid, msg := range st.msgs {
			if !bytes.Equal(msg.body, got[box].msgs[uid].body) {
				t.Errorf("%s, %s UID %d reads different bytes", when, box, uid)
			}
		}
	}
}

// describeState lists mailboxes, UIDVALIDITY, and UID, flags and size of
// each message, one line each, in order.
func describeState(state map[string]mailboxState) string {
	var lines []string
	for box, st := range state {
		lines = append(lines, fmt.Sprintf("%s UIDVALIDITY %d", box, st.uidValidity))
		for uid, msg := range st.msgs {
			lines = append(lines, fmt.Sprintf("%s UID %d FLAGS %q %d bytes", box, uid, msg.flags, len(msg.body)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// dovecotMessage is a corpus file and its bytes.
type dovecotMessage struct {
	name string
	raw  []byte
}

// dovecotCorpus returns the three largest hard_ham messages (300, 196 and
// 104 KB), the first six easy_ham ones by name, and last a 4 MB one that
// forwards the first easy_ham message with a 3 MiB attachment, as mail
// with a large attachment comes. Each has Unix line ends only and no NUL,
// as IMAP's CRLF form of it needs to be lossless.
func dovecotCorpus(t *testing.T) []dovecotMessage {
	t.Helper()
	spam := filepath.Join(harness.Corpus(t), "spamassassin")
	hard := filepath.Join(spam, ".hard_ham", "cur")
	names := readNames(t, hard)
	sort.Slice(names, func(i, j int) bool { return fileSize(t, hard, names[i]) > fileSize(t, hard, names[j]) })
	var paths []string
	for _, n := range names[:3] {
		paths = append(paths, filepath.Join(hard, n))
	}
	easy := filepath.Join(spam, ".easy_ham", "cur")
	names = readNames(t, easy)
	sort.Strings(names)
	for _, n := range names[:6] {
		paths = append(paths, filepath.Join(easy, n))
	}
	msgs := make([]dovecotMessage, len(paths))
	for i, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(raw, "\r\x00") {
			t.Fatalf("corpus message %s holds CR or NUL; pick another", p)
		}
		msgs[i] = dovecotMessage{name: filepath.Base(p), raw: raw}
	}
	return append(msgs, withAttachment(msgs[3], 3<<20))
}

// withAttachment returns a message that forwards msg as message/rfc822
// with size bytes of deterministic pseudo-random data attached in base64,
// in lines of 76 characters as MIME wants them.
func withAttachment(msg dovecotMessage, size int) dovecotMessage {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{'p', 'a', 'c', 'k', 'd', 'i', 'r'}).Read(data)
	encoded := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	b.WriteString("From: packdir test <test@packdir.example>\n" +
		"To: alice@packdir.example\n" +
		"Subject: Fwd: with a 3 MiB attachment\n" +
		"Message-ID: <attachment@packdir.example>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"packdir-boundary\"\n\n" +
		"--packdir-boundary\nContent-Type: message/rfc822\n\n")
	b.Write(msg.raw)
	b.WriteString("\n--packdir-boundary\n" +
		"Content-Type: application/octet-stream; name=\"data.bin\"\n" +
		"Content-Transfer-Encoding: base64\n\n")
	for len(encoded) > 76 {
		b.WriteString(encoded[:76] + "\n")
		encoded = encoded[76:]
	}
	b.WriteString(encoded + "\n--packdir-boundary--\n")
	return dovecotMessage{name: msg.name + " with an attachment", raw: b.Bytes()}
}

// lfOnlyHam returns the first n easy_ham messages by name that IMAP can
// carry losslessly (Unix line ends only, no NUL).
func lfOnlyHam(t *testing.T, n int) []dovecotMessage {
	t.Helper()
	dir := filepath.Join(harness.Corpus(t), "spamassassin", ".easy_ham", "cur")
	names := readNames(t, dir)
	sort.Strings(names)
	var msgs []dovecotMessage
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.ContainsAny(raw, "\r\x00") {
			msgs = append(msgs, dovecotMessage{name: name, raw: raw})
		}
		if len(msgs) == n {
			return msgs
		}
	}
	t.Fatalf("easy_ham has %d messages without CR or NUL, want %d", len(msgs), n)
	return nil
}

func fileSize(t *testing.T, dir, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// uidBase returns the base name (without :2, flags) that the folder's
// dovecot-uidlist gives the message with uid. A uidlist line is
// "UID [EXTENSIONS] :BASENAME" after a header line.
func uidBase(t *testing.T, folder string, uid uint32) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(folder, "dovecot-uidlist"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[1:] {
		num, rest, _ := strings.Cut(line, " ")
		if _, base, ok := strings.Cut(rest, ":"); ok && num == fmt.Sprint(uid) {
			return base
		}
	}
	t.Fatalf("%s/dovecot-uidlist has no UID %d:\n%s", folder, uid, b)
	return ""
}

// findMessage returns the path of the message named base in the folder's
// new/ or cur/, with whatever flags, or "" if there is none.
func findMessage(t *testing.T, folder, base string) string {
	t.Helper()
	for _, sub := range []string{"new", "cur"} {
		for _, name := range readNames(t, filepath.Join(folder, sub)) {
			if name == base || strings.HasPrefix(name, base+":") {
				return filepath.Join(folder, sub, name)
			}
		}
	}
	return ""
}

// requireMessage returns the path of the message with uid in folder.
func requireMessage(t *testing.T, folder string, uid uint32) string {
	t.Helper()
	base := uidBase(t, folder, uid)
	path := findMessage(t, folder, base)
	if path == "" {
		t.Fatalf("UID %d (%s) is in %s/dovecot-uidlist but in neither new/ nor cur/", uid, base, folder)
	}
	return path
}

// requireNamed checks that path is in dir (new or cur) and its name ends
// in suffix, or carries no :2, part when suffix is empty.
func requireNamed(t *testing.T, path, dir, suffix string) {
	t.Helper()
	name := filepath.Base(path)
	okName := strings.HasSuffix(name, suffix)
	if suffix == "" {
		okName = !strings.Contains(name, ":")
	}
	if filepath.Base(filepath.Dir(path)) != dir || !okName {
		t.Errorf("%s: want it in %s/ with the name ending in %q", path, dir, suffix)
	}
}

func requireBytes(t *testing.T, path string, msg dovecotMessage) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg.raw) {
		t.Errorf("%s: %d bytes that differ from the corpus file %s (%d bytes)", path, len(got), msg.name, len(msg.raw))
	}
}

// inode returns st_ino and st_nlink of path.
func inode(t *testing.T, path string) (ino uint64, nlink uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino, uint64(st.Nlink)
}

func requireFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
	} else if !fi.Mode().IsRegular() {
		t.Errorf("%s is %v, want a regular file", path, fi.Mode())
	}
}

func requireAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s: want it gone, Lstat says %v", path, err)
	}
}

func requireEmptyDir(t *testing.T, dir string) {
	t.Helper()
	if names := readNames(t, dir); len(names) > 0 {
		t.Errorf("%s holds %q; Dovecot should keep its files inside the Maildir", dir, names)
	}
}
