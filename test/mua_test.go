package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestMuttReadFlagDelete drives mutt in a real terminal (tmux) on a local
// Maildir and on a mount: it reads one new message, flags another,
// deletes a third and syncs. Both trees must end the same: the read one
// renamed new/ -> cur/ with :2,S, the flagged one renamed with F (mutt
// keeps an unread message in new/), the deleted one unlinked, the fourth
// untouched, and every remaining message byte-identical.
func TestMuttReadFlagDelete(t *testing.T) {
	msgs := muaHam(t, 4)
	t.Run("local", func(t *testing.T) { muttReadFlagDelete(t, muaMaildir(t), msgs) })
	t.Run("packdir", func(t *testing.T) {
		m := muaMount(t)
		muttReadFlagDelete(t, m.Dir, msgs)
		m.Stop(t)
		harness.Run(t, "fsck", m.Store)
	})
}

func muttReadFlagDelete(t *testing.T, maildir string, msgs []muaMessage) {
	names := make([]string, len(msgs))
	for i, m := range msgs {
		names[i] = fmt.Sprintf("1700000000.M%dP1.packdir-test", i)
		muaDeliver(t, maildir, "new", names[i], m.data)
	}
	home := t.TempDir()
	s := startTmux(t, home, "mutt", "-n", "-F", writeMuttrc(t, home, maildir), "-f", maildir)
	s.waitScreen(t, "[Msgs:4 New:4 ")
	// Only now: the pane's shell may not have exec'd mutt before its
	// first screen.
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", s.pid)); strings.TrimSpace(string(comm)) != "mutt" {
		t.Fatalf("the tmux pane runs %q, want mutt", comm)
	}

	muttSearch(t, s, msgs[0].subject)
	s.keys(t, "Enter") // read it in the pager
	s.waitScreen(t, "Subject: "+msgs[0].subject)
	s.keys(t, "i") // back to the index
	s.waitScreen(t, "[Msgs:4 New:3 ")
	muttSearch(t, s, msgs[1].subject)
	s.keys(t, "F")
	s.waitScreen(t, " Flag:1 ")
	muttSearch(t, s, msgs[2].subject)
	s.keys(t, "d")
	s.waitScreen(t, " Del:1 ")
	s.keys(t, "$") // sync: rename the changed, unlink the deleted
	s.waitScreen(t, "[Msgs:3 New:2 Flag:1 ")
	s.keys(t, "q")
	s.waitExit(t)

	want := []muaFile{
		{sub: "cur", name: names[0] + ":2,S", sum: muaSum(msgs[0].data)},
		{sub: "new", name: names[1] + ":2,F", sum: muaSum(msgs[1].data)},
		{sub: "new", name: names[3], sum: muaSum(msgs[3].data)},
	}
	muaRequireTree(t, maildir, want)
}

// writeMuttrc writes a muttrc that opens maildir with no header cache and
// no questions asked, and shows only the Subject in the pager.
func writeMuttrc(t *testing.T, home, maildir string) string {
	t.Helper()
	rc := filepath.Join(home, "muttrc")
	settings := fmt.Sprintf(`set mbox_type=Maildir
set folder="%[1]s"
set spoolfile="%[1]s"
unset header_cache
set mark_old=no
set maildir_trash=no
set delete=yes
set quit=yes
set move=no
set wait_key=no
set sleep_time=0
set sort=mailbox-order
ignore *
unignore subject
`, maildir)
	if err := os.WriteFile(rc, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	return rc
}

// muttSearch moves mutt's index cursor to the message with subject; the
// caller picks subjects no other message's contains.
func muttSearch(t *testing.T, s *tmuxSession, subject string) {
	t.Helper()
	s.keys(t, "/")
	s.waitScreen(t, "Search for:")
	s.typeText(t, "~s '"+subject+"'")
	s.keys(t, "Enter")
}

// muaRequireTree fails the test unless the messages of the tree below
// root are exactly want (in muaFiles' order).
func muaRequireTree(t *testing.T, root string, want []muaFile) {
	t.Helper()
	got := muaFiles(t, root)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages below %s:\n%s\nwant:\n%s", root, muaFormat(got), muaFormat(want))
	}
}

func muaFormat(files []muaFile) string {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "  %s  sha256 %.12s\n", f.path(""), f.sum)
	}
	return b.String()
}

// TestMblazeListScanFlagRefile runs mblaze's mlist, mscan, minc, mflag and
// mrefile on a mount: the listing and the summaries match what was
// delivered, flags are renames within cur/, a refile moves the message
// into .Trash/cur under a new name with its flags, and after a remount
// every name and every byte is as the programs left it.
func TestMblazeListScanFlagRefile(t *testing.T) {
	m := muaMount(t)
	msgs := muaHam(t, 4)
	env := []string{"MBLAZE=" + t.TempDir(), "HOME=" + t.TempDir(), "COLUMNS=500"}
	var paths []string
	for i, msg := range msgs {
		sub, name := "new", fmt.Sprintf("1700000000.M%dP2.packdir-test", i)
		if i >= 2 {
			sub, name = "cur", name+":2,"
		}
		paths = append(paths, muaDeliver(t, m.Dir, sub, name, msg.data))
	}

	muaRequireLines(t, "mlist", muaRun(t, env, "mlist", m.Dir), paths)
	mblazeRequireScan(t, muaRunStdin(t, env, strings.Join(paths, "\n")+"\n", "mscan", "-f", "%R|%s"), paths, msgs)

	muaRun(t, env, "minc", m.Dir) // new/NAME -> cur/NAME:2,
	for i := range paths[:2] {
		paths[i] = strings.Replace(paths[i], "/new/", "/cur/", 1) + ":2,"
	}
	muaRun(t, env, "mflag", "-S", paths[0])
	muaRun(t, env, "mflag", "-F", paths[2])
	muaRequireLines(t, "mlist -S", muaRun(t, env, "mlist", "-S", m.Dir), []string{paths[0] + "S"})
	muaRequireLines(t, "mlist -F", muaRun(t, env, "mlist", "-F", m.Dir), []string{paths[2] + "F"})
	refiled := strings.TrimSpace(muaRun(t, env, "mrefile", "-v", paths[3], filepath.Join(m.Dir, ".Trash")))

	want := mblazeResult(t, m.Dir, msgs, paths, refiled)
	muaRequireTree(t, m.Dir, want)
	m.Restart(t)
	muaRequireTree(t, m.Dir, want)
	m.Stop(t)
	harness.Run(t, "fsck", m.Store)
}

// mblazeResult is the tree TestMblazeListScanFlagRefile expects: refiled
// is the name mrefile -v printed, in .Trash/cur, with no flags.
func mblazeResult(t *testing.T, root string, msgs []muaMessage, paths []string, refiled string) []muaFile {
	t.Helper()
	trash := filepath.Join(root, ".Trash", "cur") + "/"
	if !strings.HasPrefix(refiled, trash) || !strings.HasSuffix(refiled, ":2,") {
		t.Fatalf("mrefile -v printed %q, want a name in %s with the flags (none) kept", refiled, trash)
	}
	return []muaFile{
		{folder: ".Trash", sub: "cur", name: strings.TrimPrefix(refiled, trash), sum: muaSum(msgs[3].data)},
		{sub: "cur", name: filepath.Base(paths[0]) + "S", sum: muaSum(msgs[0].data)},
		{sub: "cur", name: filepath.Base(paths[1]), sum: muaSum(msgs[1].data)},
		{sub: "cur", name: filepath.Base(paths[2]) + "F", sum: muaSum(msgs[2].data)},
	}
}

// muaRequireLines fails the test unless out has exactly the lines want, in
// any order.
func muaRequireLines(t *testing.T, what, out string, want []string) {
	t.Helper()
	got := strings.Fields(out)
	sort.Strings(got)
	want = append([]string(nil), want...)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s printed:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// mblazeRequireScan checks mscan's "path|subject" lines against the messages.
func mblazeRequireScan(t *testing.T, out string, paths []string, msgs []muaMessage) {
	t.Helper()
	var want []string
	for i, p := range paths {
		want = append(want, p+"|"+msgs[i].subject)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	for i := range got {
		got[i] = strings.TrimRight(got[i], " ")
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mscan printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNotmuchIndexTagRemount runs notmuch on a mount with its Xapian
// database in the default place, MOUNT/.notmuch: a side-file tree inside
// the mount that Xapian fsyncs, renames over and locks. notmuch new must
// index every message once, a tag change must rename the file (new/NAME
// -> cur/NAME:2,FS, flag synchronization), a second notmuch new must find
// nothing to do, and search and counts must hold after a remount.
func TestNotmuchIndexTagRemount(t *testing.T) {
	m := muaMount(t)
	msgs := muaHam(t, 12)
	var names []string
	for i, msg := range msgs {
		sub, name := "cur", msg.name // read mail, with its :2,S
		if i >= 8 {
			sub, name = "new", fmt.Sprintf("1700000000.M%dP4.packdir-test", i)
		}
		muaDeliver(t, m.Dir, sub, name, msg.data)
		names = append(names, name)
	}
	env := []string{"NOTMUCH_CONFIG=" + writeNotmuchConfig(t, m.Dir), "HOME=" + t.TempDir()}

	muaRequireLine(t, muaRun(t, env, "notmuch", "new"), "Added 12 new messages to the database.")
	if _, err := os.Stat(filepath.Join(m.Dir, ".notmuch", "xapian")); err != nil {
		t.Errorf("the notmuch database is not inside the mount: %v", err)
	}
	notmuchRequireCount(t, env, "*", 12)
	notmuchRequireCount(t, env, "tag:unread", 4) // the four in new/, without S

	target := msgs[8]
	muaRun(t, env, "notmuch", "tag", "+flagged", "-unread", "--", "id:"+target.messageID)
	tagged := filepath.Join(m.Dir, "cur", names[8]+":2,FS")
	if got := fileSum(t, tagged); got != muaSum(target.data) {
		t.Errorf("%s: sha256 %s, want the message's %s", tagged, got, muaSum(target.data))
	}
	muaRequireLine(t, muaRun(t, env, "notmuch", "new"), "No new mail.")
	query := fmt.Sprintf("subject:%q", target.subject)
	muaRequireLines(t, "notmuch search --output=files", muaRun(t, env, "notmuch", "search", "--output=files", query), []string{tagged})

	m.Restart(t)
	notmuchRequireCount(t, env, "*", 12)
	notmuchRequireCount(t, env, "tag:flagged", 1)
	notmuchRequireCount(t, env, "tag:unread", 3)
	muaRequireLine(t, muaRun(t, env, "notmuch", "new"), "No new mail.")
	muaRequireLines(t, "notmuch search --output=files", muaRun(t, env, "notmuch", "search", "--output=files", query), []string{tagged})
	m.Stop(t)
	harness.Run(t, "fsck", m.Store)
}

// writeNotmuchConfig writes a notmuch config for the Maildir at root, with
// the database in its default place, root/.notmuch, and flags synchronized
// with file names.
func writeNotmuchConfig(t *testing.T, root string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notmuch-config")
	config := fmt.Sprintf(`[database]
path=%s
[user]
name=Packdir Tester
primary_email=tester@example.org
[new]
tags=unread;inbox;
[maildir]
synchronize_flags=true
`, root)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// notmuchRequireCount fails the test unless notmuch count query prints want.
func notmuchRequireCount(t *testing.T, env []string, query string, want int) {
	t.Helper()
	got := strings.TrimSpace(muaRun(t, env, "notmuch", "count", "--", query))
	if got != fmt.Sprint(want) {
		t.Errorf("notmuch count %s = %s, want %d", query, got, want)
	}
}

// muaRequireLine fails the test unless a program's output has the line want.
func muaRequireLine(t *testing.T, out, want string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == want {
			return
		}
	}
	t.Errorf("output has no line %q:\n%s", want, out)
}

// TestMbsyncTwoWay syncs a Maildir++ tree with a plain local Maildir with
// mbsync (both MaildirStores, SyncState in the tree itself), once with a
// local tree and once with a mount in its place, and requires the same
// outcome: messages from each side appear on the other byte-identical,
// with folders created on both sides; a flag change and a deletion
// propagate; a further run changes nothing.
func TestMbsyncTwoWay(t *testing.T) {
	msgs := muaHam(t, 6)
	var local, packdir []string
	t.Run("local", func(t *testing.T) { local = mbsyncTwoWay(t, muaMaildir(t), msgs) })
	t.Run("packdir", func(t *testing.T) {
		m := muaMount(t)
		packdir = mbsyncTwoWay(t, m.Dir, msgs)
		m.Stop(t)
		harness.Run(t, "fsck", m.Store)
	})
	if local != nil && packdir != nil && !reflect.DeepEqual(local, packdir) {
		t.Errorf("mbsync ends differently on a mount:\n%s\nthan on a local Maildir:\n%s",
			strings.Join(packdir, "\n"), strings.Join(local, "\n"))
	}
}

// mbsyncTwoWay runs the scenario of TestMbsyncTwoWay between box (a
// Maildir++ tree with packdir's default folders) and a fresh local peer,
// and returns the final state of both as "side folder/sub flags sha256"
// lines, which do not depend on the names mbsync makes up.
func mbsyncTwoWay(t *testing.T, box string, msgs []muaMessage) []string {
	peer := t.TempDir()
	for _, sub := range []string{"tmp", "new", "cur"} {
		muaMkdir(t, filepath.Join(peer, sub))
	}
	muaFolder(t, peer, ".Lists.golang")
	rc := writeMbsyncrc(t, box, peer)
	muaDeliver(t, box, "cur", "1700000000.M0P5.box:2,S", msgs[0].data)
	muaDeliver(t, box, "cur", "1700000000.M1P5.box:2,", msgs[1].data)
	muaDeliver(t, box, "new", "1700000000.M2P5.box", msgs[2].data)
	muaDeliver(t, peer, "cur", "1700000000.M3P5.peer:2,RS", msgs[3].data)
	muaDeliver(t, peer, "new", "1700000000.M4P5.peer", msgs[4].data)
	muaDeliver(t, filepath.Join(peer, ".Lists.golang"), "cur", "1700000000.M5P5.peer:2,S", msgs[5].data)

	muaRun(t, nil, "mbsync", "-c", rc, "-a")
	mbsyncRequireMirrored(t, box, peer, msgs)
	for _, dir := range []string{filepath.Join(box, ".Lists.golang", "cur"), filepath.Join(peer, ".Trash", "cur")} {
		if !muaIsDir(dir) {
			t.Errorf("mbsync did not create %s (Create Both)", dir)
		}
	}

	flagged := mbsyncFind(t, box, muaSum(msgs[0].data))
	muaRename(t, flagged.path(box), filepath.Join(box, flagged.folder, "cur", muaWithFlag(flagged.name, 'F')))
	deleted := mbsyncFind(t, peer, muaSum(msgs[1].data))
	if err := os.Remove(deleted.path(peer)); err != nil {
		t.Fatal(err)
	}
	muaRun(t, nil, "mbsync", "-c", rc, "-a")
	mbsyncRequireMirrored(t, box, peer, append(msgs[:1:1], msgs[2:]...))
	if f := mbsyncFind(t, peer, muaSum(msgs[0].data)); f.flags() != "FS" {
		t.Errorf("flag F set in the tree did not reach the peer: %s", f.path(peer))
	}

	before := append(muaFiles(t, box), muaFiles(t, peer)...)
	muaRun(t, nil, "mbsync", "-c", rc, "-a")
	if after := append(muaFiles(t, box), muaFiles(t, peer)...); !reflect.DeepEqual(before, after) {
		t.Errorf("a sync with nothing to do changed messages:\nbefore:\n%s\nafter:\n%s", muaFormat(before), muaFormat(after))
	}
	return append(mbsyncStates(t, "box", box), mbsyncStates(t, "peer", peer)...)
}

// writeMbsyncrc writes an mbsync config that syncs everything both ways
// between the Maildir++ trees box (near, holding the sync state) and peer
// (far).
func writeMbsyncrc(t *testing.T, box, peer string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mbsyncrc")
	config := fmt.Sprintf(`MaildirStore box
Inbox %s/
SubFolders Maildir++

MaildirStore peer
Inbox %s/
SubFolders Maildir++

Channel box-peer
Far :peer:
Near :box:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, box, peer)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mbsyncRequireMirrored fails the test unless box and peer hold the same
// messages, folder by folder and with the same flags, and these are
// exactly msgs, byte for byte apart from mbsync's X-TUID header.
func mbsyncRequireMirrored(t *testing.T, box, peer string, msgs []muaMessage) {
	t.Helper()
	b, p := mbsyncKeys(t, box), mbsyncKeys(t, peer)
	if !reflect.DeepEqual(b, p) {
		t.Errorf("after mbsync the two sides differ; tree:\n%s\npeer:\n%s", strings.Join(b, "\n"), strings.Join(p, "\n"))
	}
	var got, want []string
	for _, key := range b {
		got = append(got, key[strings.LastIndexByte(key, ' ')+1:])
	}
	for _, m := range msgs {
		want = append(want, muaSum(m.data))
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after mbsync the tree holds messages with sha256\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// mbsyncKeys lists the tree's messages as "folder :flags sha256", sorted,
// with the sha256 of the bytes without mbsync's X-TUID header.
func mbsyncKeys(t *testing.T, root string) []string {
	t.Helper()
	var keys []string
	for _, f := range muaFiles(t, root) {
		keys = append(keys, fmt.Sprintf("%s :%s %s", f.folder, f.flags(), mbsyncSum(t, f.path(root))))
	}
	sort.Strings(keys)
	return keys
}

// mbsyncSum is the sha256 of the message at path without the X-TUID
// header line: mbsync adds one to every message it copies (on any
// filesystem), to find it again in the target store.
func mbsyncSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := bytes.Index(data, []byte("\n\n"))
	if end < 0 {
		end = len(data)
	}
	if i := bytes.Index(data[:end], []byte("\nX-TUID: ")); i >= 0 {
		j := i + 1 + bytes.IndexByte(data[i+1:], '\n')
		data = append(data[:i:i], data[j:]...)
	}
	return muaSum(data)
}

// mbsyncStates lists the tree's messages as "side folder/sub :flags
// sha256" (without X-TUID), sorted.
func mbsyncStates(t *testing.T, side, root string) []string {
	t.Helper()
	var states []string
	for _, f := range muaFiles(t, root) {
		states = append(states, fmt.Sprintf("%s %s/%s :%s %s", side, f.folder, f.sub, f.flags(), mbsyncSum(t, f.path(root))))
	}
	sort.Strings(states)
	return states
}

// mbsyncFind returns the one message below root whose bytes without
// X-TUID have the given sha256.
func mbsyncFind(t *testing.T, root, sum string) muaFile {
	t.Helper()
	var found []muaFile
	for _, f := range muaFiles(t, root) {
		if mbsyncSum(t, f.path(root)) == sum {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d messages with sha256 %s below %s, want 1:\n%s", len(found), sum, root, muaFormat(found))
	}
	return found[0]
}

// muaWithFlag returns the Maildir name with flag added to its info, the
// flags kept in ASCII order as the Maildir spec asks.
func muaWithFlag(name string, flag byte) string {
	base, flags, _ := strings.Cut(name, ":2,")
	fl := []byte(flags + string(flag))
	sort.Slice(fl, func(i, j int) bool { return fl[i] < fl[j] })
	return base + ":2," + string(fl)
}

func muaRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
