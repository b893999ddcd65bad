package test

// Helpers for the delivery tests in deliver_test.go: a mount owned by an
// unprivileged recipient, corpus messages chosen to include the odd ones,
// running a delivery program as the recipient, and comparing what arrived
// with what was sent, folder by folder, by SHA-256 multiset.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// The recipient the delivery programs run as: nobody, because MDAs run as
// the recipient (procmail and maildrop drop their setuid/setgid privileges
// to the invoking user, getmail_maildir refuses to run as root), and a
// recipient who is not root is what makes the mount's allow_other and
// default_permissions matter.
const (
	mdaUID = 65534
	mdaGID = 65534
)

// mdaTimeout bounds one run of a delivery program; it only turns a hang
// into a failure, it is no speed requirement.
const mdaTimeout = 2 * time.Minute

// mdaWorkers is how many deliveries run at once, as an MTA runs several
// local deliveries in parallel.
const mdaWorkers = 4

// mdaMessage is one corpus message to deliver.
type mdaMessage struct {
	Rel  string // path below the corpus, for error messages
	Data []byte
}

// mdaMount initialises a store and mounts the Maildir++ tree of user
// "tester", owned by the recipient, on a mountpoint the recipient can
// reach.
func mdaMount(t *testing.T) (store, mnt string, m *harness.Mount) {
	t.Helper()
	harness.RequireFuse(t)
	harness.RequireRoot(t)
	store = filepath.Join(t.TempDir(), "store")
	mnt = mailUserDir(t)
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "--uid", strconv.Itoa(mdaUID), "--gid", strconv.Itoa(mdaGID), "tester", store)
	m = harness.Start(t, store, mnt, "--user", "tester")
	return store, mnt, m
}

// mdaHome returns a private directory owned by the recipient: its HOME,
// and the place for its filter files and logs, so that no delivery program
// reads or writes the real $HOME.
func mdaHome(t *testing.T) string {
	t.Helper()
	dir := mailUserDir(t)
	if err := os.Chown(dir, mdaUID, mdaGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mdaWriteFile writes a file owned by the recipient with mode 0600: what
// maildrop demands of a filter file, and procmail of an rcfile.
func mdaWriteFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, mdaUID, mdaGID); err != nil {
		t.Fatal(err)
	}
}

// mdaRun runs a program as the recipient with stdin as its standard input
// and only PATH and env in its environment. A failure returns the output.
func mdaRun(stdin []byte, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), mdaTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	// An empty Groups list drops root's supplementary groups too.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: mdaUID, Gid: mdaGID, Groups: []uint32{}},
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, firstLines(string(out), 20))
	}
	return nil
}

// mdaMessages returns n corpus messages: first every message with a
// property a delivery program might trip over (no final newline, CRLF line
// ends, raw 8-bit bytes in the header, a "From " line in the body, over
// 200 KiB), then ordinary ones taken in turn from .easy_ham and .spam, in
// a fixed order.
func mdaMessages(t *testing.T, n int) []mdaMessage {
	t.Helper()
	var odd, ham, spam []mdaMessage
	for _, folder := range []string{".easy_ham", ".easy_ham_2", ".hard_ham", ".spam", ".spam_2"} {
		for _, msg := range mdaReadFolder(t, folder) {
			switch {
			case mdaOdd(msg.Data):
				odd = append(odd, msg)
			case folder == ".easy_ham":
				ham = append(ham, msg)
			case folder == ".spam":
				spam = append(spam, msg)
			}
		}
	}
	if len(odd) < 5 {
		t.Fatalf("found %d odd messages in the corpus, want the ~50 MANIFEST.txt describes", len(odd))
	}
	msgs := odd
	for i := 0; len(msgs) < n && (i < len(ham) || i < len(spam)); i++ {
		if i < len(ham) {
			msgs = append(msgs, ham[i])
		}
		if i < len(spam) && len(msgs) < n {
			msgs = append(msgs, spam[i])
		}
	}
	if len(msgs) < n {
		t.Fatalf("the corpus has only %d messages to choose from, want %d", len(msgs), n)
	}
	return msgs[:n]
}

// mdaReadFolder reads every message of a corpus folder's cur/, sorted by name.
func mdaReadFolder(t *testing.T, folder string) []mdaMessage {
	t.Helper()
	dir := filepath.Join(harness.Corpus(t), "spamassassin", folder, "cur")
	names := readNames(t, dir)
	sort.Strings(names)
	msgs := make([]mdaMessage, 0, len(names))
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, mdaMessage{Rel: filepath.Join(folder, "cur", name), Data: data})
	}
	return msgs
}

func mdaOdd(data []byte) bool {
	header := mdaHeader(data)
	return !bytes.HasSuffix(data, []byte("\n")) ||
		bytes.Contains(data, []byte("\r\n")) ||
		mdaHas8Bit(header) ||
		bytes.Contains(data[len(header):], []byte("\nFrom ")) ||
		len(data) > 200<<10
}

func mdaHas8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// mdaHeader returns the header of a message as procmail and maildrop
// delimit it: everything before the first empty line.
func mdaHeader(data []byte) []byte {
	if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		return data[:i+1]
	}
	return data
}

var mdaListID = regexp.MustCompile(`(?mi)^List-Id:`)

// mdaRoute is the folder rule every delivery test configures in its
// program: a message with a List-Id header field goes to .Lists, all
// others to INBOX (""). Header matches in procmail and maildrop are
// case-insensitive and look at the header only.
func mdaRoute(data []byte) string {
	if mdaListID.Match(mdaHeader(data)) {
		return ".Lists"
	}
	return ""
}

// mdaDeliverAll calls deliver for every message, mdaWorkers at a time, and
// fails the test if any delivery failed.
func mdaDeliverAll(t *testing.T, msgs []mdaMessage, deliver func(mdaMessage) error) {
	t.Helper()
	work := make(chan mdaMessage)
	errs := make(chan error, len(msgs))
	var wg sync.WaitGroup
	for range mdaWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range work {
				if err := deliver(msg); err != nil {
					errs <- fmt.Errorf("delivering %s: %w", msg.Rel, err)
				}
			}
		}()
	}
	for _, msg := range msgs {
		work <- msg
	}
	close(work)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d deliveries failed", failed, len(msgs))
	}
}

// mdaSums maps folder ("" for INBOX) to the SHA-256 multiset of its messages.
type mdaSums map[string]map[string]int

func (s mdaSums) add(folder string, data []byte) {
	if s[folder] == nil {
		s[folder] = make(map[string]int)
	}
	h := sha256.Sum256(data)
	s[folder][hex.EncodeToString(h[:])]++
}

// mdaWant is what should arrive: each message, changed by change (nil:
// unchanged), in the folder route gives it.
func mdaWant(msgs []mdaMessage, route func([]byte) string, change func([]byte) []byte) mdaSums {
	want := make(mdaSums)
	for _, msg := range msgs {
		data := msg.Data
		if change != nil {
			data = change(data)
		}
		want.add(route(data), data)
	}
	return want
}

// mdaArrived reads new/ of each folder of root. It fails the test if a
// folder's tmp/ or cur/ holds anything: a delivery program leaves nothing
// in tmp/, and nothing here moves messages to cur/.
func mdaArrived(t *testing.T, root string, folders ...string) mdaSums {
	t.Helper()
	got := make(mdaSums)
	for _, folder := range folders {
		dir := filepath.Join(root, folder)
		for _, sub := range []string{"tmp", "cur"} {
			if names := readNames(t, filepath.Join(dir, sub)); len(names) > 0 {
				t.Errorf("%s/%s holds %d files after delivery, want none: %s",
					mdaFolderName(folder), sub, len(names), head(names))
			}
		}
		newDir := filepath.Join(dir, "new")
		for _, name := range readNames(t, newDir) {
			data, err := os.ReadFile(filepath.Join(newDir, name))
			if err != nil {
				t.Fatal(err)
			}
			got.add(folder, data)
		}
	}
	return got
}

// mdaCompare fails the test unless got and want hold the same messages in
// the same folders, counting duplicates.
func mdaCompare(t *testing.T, what string, want, got mdaSums) {
	t.Helper()
	folders := make(map[string]bool)
	for f := range want {
		folders[f] = true
	}
	for f := range got {
		folders[f] = true
	}
	for folder := range folders {
		missing, extra := mdaDiff(want[folder], got[folder])
		if missing > 0 || extra > 0 {
			t.Errorf("%s: %s/new/ has %d messages, want %d: %d expected ones missing or changed, %d unexpected",
				what, mdaFolderName(folder), mdaCount(got[folder]), mdaCount(want[folder]), missing, extra)
		}
	}
}

func mdaDiff(want, got map[string]int) (missing, extra int) {
	for sum, n := range want {
		missing += max(n-got[sum], 0)
	}
	for sum, n := range got {
		extra += max(n-want[sum], 0)
	}
	return missing, extra
}

func mdaCount(sums map[string]int) int {
	n := 0
	for _, c := range sums {
		n += c
	}
	return n
}

func mdaFolderName(folder string) string {
	if folder == "" {
		return "INBOX"
	}
	return folder
}

// mdaMakeFolder makes the Maildir++ folder .NAME below root with
// maildrop's maildirmake -f, as the recipient.
func mdaMakeFolder(t *testing.T, root, name string) {
	t.Helper()
	if err := mdaRun(nil, nil, "maildirmake.maildrop", "-f", name, root); err != nil {
		t.Fatal(err)
	}
}

// mdaRequireFolders fails the test unless want expects messages in each
// folder, so that the folder rule is really exercised.
func mdaRequireFolders(t *testing.T, want mdaSums, folders ...string) {
	t.Helper()
	for _, f := range folders {
		if len(want[f]) == 0 {
			t.Fatalf("no message is meant for %s: the chosen messages do not exercise the folder rule", mdaFolderName(f))
		}
	}
}

// mdaTail returns the last lines of a log file, for a failure message.
func mdaTail(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.SplitAfter(string(data), "\n")
	return strings.Join(lines[max(len(lines)-40, 0):], "")
}
