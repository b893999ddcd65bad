package test

// Delivery programs (MDAs) writing into a packdir mount unchanged: procmail,
// maildrop, Postfix local(8)'s maildir delivery, getmail6. Each test mounts
// a fresh store for a recipient who is not root, delivers real corpus
// messages with the program as that recipient, checks that every message
// arrived byte for byte in the right folder's new/ with tmp/ left empty,
// then stops the mount and runs fsck. Helpers are in mda_test.go.

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// TestProcmailDelivery delivers 300 corpus messages with procmail into
// INBOX (DEFAULT) and, by a List-Id header recipe, into the Maildir++
// folder .Lists/, which procmail creates itself. procmail is setuid root
// and drops to the recipient; it writes tmp/NAME (O_EXCL), fsyncs, links
// it to new/NAME and unlinks tmp/NAME.
func TestProcmailDelivery(t *testing.T) {
	store, mnt, m := mdaMount(t)
	home := mdaHome(t)
	rc := filepath.Join(home, "procmailrc")
	mdaWriteFile(t, rc, procmailRC(home, mnt))
	msgs := mdaMessages(t, 300)
	mdaDeliverAll(t, msgs, func(msg mdaMessage) error {
		return mdaRun(msg.Data, []string{"HOME=" + home}, "procmail", "-m", rc)
	})

	// procmail stores a message as it reads it, less a leading From_
	// line: the corpus messages have none, and procmail adds none to a
	// maildir delivery, so each must arrive unchanged.
	want := mdaWant(msgs, mdaRoute, nil)
	mdaRequireFolders(t, want, "", ".Lists")
	mdaCompare(t, "procmail", want, mdaArrived(t, mnt, "", ".Lists"))
	if t.Failed() {
		t.Logf("procmail log:\n%s", mdaTail(t, filepath.Join(home, "procmail.log")))
	}
	m.Stop(t)
	harness.Run(t, "fsck", store)
}

// procmailRC is the rcfile for procmail -m, which reads no
// /etc/procmailrc and no ~/.procmailrc, and bounces a message it cannot
// deliver (exit 73) rather than fall back to /var/mail. procmail takes
// HOME from the passwd entry (nobody's is /nonexistent), so MAILDIR, its
// working directory, and LOGFILE point into home.
func procmailRC(home, mnt string) string {
	return fmt.Sprintf(`MAILDIR=%[1]s
LOGFILE=%[1]s/procmail.log
DEFAULT=%[2]s/

:0
* ^List-Id:
%[2]s/.Lists/
`, home, mnt)
}

// TestMaildropDelivery delivers 300 corpus messages with maildrop, as the
// recipient with a filter file of the recipient's, into INBOX (DEFAULT)
// and, by a List-Id header rule, into .Lists/, made beforehand with
// maildrop's maildirmake -f as maildrop creates no folders.
func TestMaildropDelivery(t *testing.T) {
	store, mnt, m := mdaMount(t)
	home := mdaHome(t)
	mdaMakeFolder(t, mnt, "Lists")
	filter := filepath.Join(home, "mailfilter")
	mdaWriteFile(t, filter, maildropFilter(home, mnt))
	msgs := mdaMessages(t, 300)
	mdaDeliverAll(t, msgs, func(msg mdaMessage) error {
		return mdaRun(msg.Data, []string{"HOME=" + home}, "maildrop", filter)
	})

	want := mdaWant(msgs, mdaRoute, maildropChange)
	mdaRequireFolders(t, want, "", ".Lists")
	mdaCompare(t, "maildrop", want, mdaArrived(t, mnt, "", ".Lists"))
	if t.Failed() {
		t.Logf("maildrop log:\n%s", mdaTail(t, filepath.Join(home, "maildrop.log")))
	}
	m.Stop(t)
	harness.Run(t, "fsck", store)
}

// maildropFilter is the filter file: maildrop reads it instead of
// ~/.mailfilter, and refuses it unless the recipient owns it and no one
// else may write it (mdaWriteFile).
func maildropFilter(home, mnt string) string {
	return fmt.Sprintf(`DEFAULT="%[2]s"
logfile "%[1]s/maildrop.log"

if (/^List-Id:/)
{
	to "%[2]s/.Lists/"
}
`, home, mnt)
}

// maildropChange is what maildrop does to a message on any file system
// (seen with maildrop 2.9.3 on ext4): it ends a message that lacks a final
// newline with one. One corpus message lacks it (and maildrop still puts
// its original size in the ",S=" part of the file name).
func maildropChange(data []byte) []byte {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return append(data[:len(data):len(data)], '\n')
	}
	return data
}

// TestGetmailDelivery delivers 100 corpus messages with getmail6's
// getmail_maildir, getmail's own maildir delivery code (the same function
// its Maildir destination uses: tmp/ file, fsync, link to new/, unlink),
// into INBOX and .Lists/ of the mount and of a native maildir on the local
// disk. getmail re-wraps long header lines and adds Delivered-To and
// Return-Path, so the native maildir is the reference: the mount must hold
// byte for byte what the local disk holds.
func TestGetmailDelivery(t *testing.T) {
	store, mnt, m := mdaMount(t)
	home := mdaHome(t)
	native := filepath.Join(home, "Maildir")
	if err := mdaRun(nil, nil, "maildirmake.maildrop", native); err != nil {
		t.Fatal(err)
	}
	mdaMakeFolder(t, native, "Lists")
	mdaMakeFolder(t, mnt, "Lists")
	env := []string{"HOME=" + home, "SENDER=list-owner@example.org", "RECIPIENT=tester@example.org"}
	msgs := mdaMessages(t, 100)
	mdaDeliverAll(t, msgs, func(msg mdaMessage) error {
		folder := mdaRoute(msg.Data)
		for _, root := range []string{mnt, native} {
			// getmail_maildir wants a path that ends with a slash.
			path := filepath.Join(root, folder) + "/"
			if err := mdaRun(msg.Data, env, "getmail_maildir", path); err != nil {
				return err
			}
		}
		return nil
	})

	want := mdaArrived(t, native, "", ".Lists")
	if n := mdaCount(want[""]) + mdaCount(want[".Lists"]); n != len(msgs) {
		t.Fatalf("the native maildir holds %d messages after %d deliveries", n, len(msgs))
	}
	mdaRequireFolders(t, want, "", ".Lists")
	mdaCompare(t, "getmail_maildir", want, mdaArrived(t, mnt, "", ".Lists"))
	m.Stop(t)
	harness.Run(t, "fsck", store)
}

// Postfix-style delivery: postfixProcs processes deliver postfixEach
// messages each, at once, and after a remount postfixEachAgain each.
const (
	postfixProcs     = 8
	postfixEach      = 50
	postfixEachAgain = 10

	postfixMaildirEnv = "PACKDIR_POSTFIX_MAILDIR"
	postfixLogEnv     = "PACKDIR_POSTFIX_LOG"
)

// TestPostfixLocalDelivery runs 8 processes that each deliver 50 corpus
// messages into INBOX exactly as Postfix's local(8) does (postfixDeliver):
// the message is named after the inode number of its tmp/ file, so
// packdir must give every live file its own inode number, and keep it
// across the link into new/. Every process logs the inode and name of each
// delivery; the inode numbers must all differ (each tmp/ file lives on as
// a message in new/ to the end, so a number given twice would have been
// shared by two live files), each new/NAME must have the inode number and
// device its name records, and every message must be in new/ unchanged.
// Then the same after a remount and 8 x 10 more deliveries: the numbers
// packdir hands out after a restart must not repeat those of the
// messages already stored.
func TestPostfixLocalDelivery(t *testing.T) {
	store, mnt, m := mdaMount(t)
	all := mdaMessages(t, postfixProcs*(postfixEach+postfixEachAgain))
	first, again := all[:postfixProcs*postfixEach], all[postfixProcs*postfixEach:]
	logs := t.TempDir()
	postfixRound(t, mnt, filepath.Join(logs, "first"), first)
	postfixCheck(t, mnt, logs, first)

	m.Restart(t)
	postfixRound(t, mnt, filepath.Join(logs, "again"), again)
	postfixCheck(t, mnt, logs, all)
	m.Stop(t)
	harness.Run(t, "fsck", store)
}

// postfixRound delivers msgs with postfixProcs processes at once, each
// logging to LOG-N.
func postfixRound(t *testing.T, mnt, log string, msgs []mdaMessage) {
	t.Helper()
	each := len(msgs) / postfixProcs
	var wg sync.WaitGroup
	for p := range postfixProcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			postfixRun(t, mnt, fmt.Sprintf("%s-%d", log, p), msgs[p*each:(p+1)*each])
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// postfixCheck checks the deliveries logged in logs against the inode
// numbers and contents of new/, which must hold exactly msgs.
func postfixCheck(t *testing.T, mnt, logs string, msgs []mdaMessage) {
	t.Helper()
	deliveries := postfixReadLogs(t, logs)
	if len(deliveries) != len(msgs) {
		t.Errorf("the processes logged %d deliveries, want %d", len(deliveries), len(msgs))
	}
	postfixCheckInodes(t, mnt, deliveries)
	want := mdaWant(msgs, func([]byte) string { return "" }, nil)
	mdaCompare(t, "postfix local", want, mdaArrived(t, mnt, ""))
}

// postfixRun runs one delivery process: this test binary again, running
// only TestPostfixLocalHelper, as root. (Postfix's local switches to the
// recipient's uid; the files belong to the recipient either way, as
// packdir makes everything in a user's tree the user's.)
func postfixRun(t *testing.T, mnt, log string, msgs []mdaMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), mdaTimeout)
	defer cancel()
	args := []string{"-test.run=^TestPostfixLocalHelper$", "-test.count=1", "--"}
	for _, msg := range msgs {
		args = append(args, msg.Rel)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), postfixMaildirEnv+"="+mnt, postfixLogEnv+"="+log)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("postfix-style delivery process: %v\n%s", err, firstLines(string(out), 20))
	}
}

// TestPostfixLocalHelper is the body of one delivery process of
// TestPostfixLocalDelivery, which starts it by running the test binary
// again (os/exec's helper process pattern) with the maildir in
// $PACKDIR_POSTFIX_MAILDIR and the corpus messages as arguments. Run any
// other way it does nothing.
func TestPostfixLocalHelper(t *testing.T) {
	maildir := os.Getenv(postfixMaildirEnv)
	if maildir == "" {
		return
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(os.Getenv(postfixLogEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	corpus := filepath.Join(harness.Corpus(t), "spamassassin")
	for _, rel := range flag.Args() {
		data, err := os.ReadFile(filepath.Join(corpus, rel))
		if err != nil {
			t.Fatal(err)
		}
		ino, name, err := postfixDeliver(maildir, host, data)
		if err != nil {
			t.Fatalf("delivering %s: %v", rel, err)
		}
		fmt.Fprintf(log, "%d %s\n", ino, name)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
}

// postfixDeliver delivers data into maildir as Postfix 3's local(8) does
// (src/local/maildir.c, deliver_maildir): create tmp/SECS.PPID.HOST with
// O_CREAT|O_EXCL, fstat it and name the message
// SECS.VDEVIINOMUSECS.HOST after the open file's device and inode
// numbers, copy the message in and fsync and close (mail_copy), link
// tmp/ to new/NAME, unlink tmp/. The tmp/ name repeats within a second,
// once the previous delivery has unlinked it. It returns the inode number
// and the name.
func postfixDeliver(maildir, host string, data []byte) (uint64, string, error) {
	start := time.Now()
	tmp := filepath.Join(maildir, "tmp", fmt.Sprintf("%d.P%d.%s", start.Unix(), os.Getpid(), host))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return 0, "", fmt.Errorf("fstat %s: %w", tmp, err)
	}
	name := fmt.Sprintf("%d.V%xI%xM%d.%s", start.Unix(), st.Dev, st.Ino, start.Nanosecond()/1000, host)
	if err := postfixCopy(f, data); err != nil {
		os.Remove(tmp)
		return 0, "", err
	}
	if err := os.Link(tmp, filepath.Join(maildir, "new", name)); err != nil {
		os.Remove(tmp)
		return 0, "", err
	}
	return st.Ino, name, os.Remove(tmp)
}

// postfixCopy writes data in the 4 KiB pieces Postfix's VSTREAM buffer
// writes, then fsyncs and closes, in mail_copy's order.
func postfixCopy(f *os.File, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), 4096)
		if _, err := f.Write(data[:n]); err != nil {
			f.Close()
			return err
		}
		data = data[n:]
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// postfixDelivery is one line of a delivery process's log.
type postfixDelivery struct {
	Ino  uint64
	Name string
}

func postfixReadLogs(t *testing.T, dir string) []postfixDelivery {
	t.Helper()
	var all []postfixDelivery
	for _, name := range readNames(t, dir) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ino, msgName, ok := strings.Cut(sc.Text(), " ")
			n, err := strconv.ParseUint(ino, 10, 64)
			if !ok || err != nil {
				t.Fatalf("%s: bad line %q", name, sc.Text())
			}
			all = append(all, postfixDelivery{Ino: n, Name: msgName})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// postfixName parses SECS.VDEVIINOMUSECS.HOST.
var postfixName = regexp.MustCompile(`^\d+\.V([0-9a-f]+)I([0-9a-f]+)M\d+\.`)

// postfixCheckInodes checks that no inode number was given to two
// deliveries, and that each new/NAME has the device and inode numbers in
// its name, which are those its tmp/ file had.
func postfixCheckInodes(t *testing.T, mnt string, deliveries []postfixDelivery) {
	t.Helper()
	byIno := make(map[uint64]string, len(deliveries))
	var problems []string
	for _, d := range deliveries {
		if other, dup := byIno[d.Ino]; dup {
			problems = append(problems, fmt.Sprintf("inode %d was given to two live tmp/ files: %s and %s", d.Ino, other, d.Name))
			continue
		}
		byIno[d.Ino] = d.Name
		if err := postfixCheckName(mnt, d); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		t.Errorf("%d problems with inode numbers in %d deliveries, the first:\n%s",
			len(problems), len(deliveries), strings.Join(problems[:min(len(problems), 5)], "\n"))
	}
}

func postfixCheckName(mnt string, d postfixDelivery) error {
	match := postfixName.FindStringSubmatch(d.Name)
	if match == nil {
		return fmt.Errorf("%s: not a Postfix maildir name", d.Name)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "new", d.Name), &st); err != nil {
		return fmt.Errorf("new/%s: %w", d.Name, err)
	}
	if st.Ino != d.Ino || match[2] != strconv.FormatUint(st.Ino, 16) {
		return fmt.Errorf("new/%s has inode %d (%#x), its tmp/ file had %d", d.Name, st.Ino, st.Ino, d.Ino)
	}
	if match[1] != strconv.FormatUint(st.Dev, 16) {
		return fmt.Errorf("new/%s is on device %#x, its tmp/ file was on 0x%s", d.Name, st.Dev, match[1])
	}
	return nil
}
