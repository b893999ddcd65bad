package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// muaTimeout bounds one run of a mail program; it catches a hang.
const muaTimeout = 2 * time.Minute

// muaMessage is one message of the SpamAssassin corpus.
type muaMessage struct {
	name      string // its file name in the corpus
	subject   string
	messageID string // without the angle brackets
	data      []byte
}

// muaPlainSubject is a Subject that any search pattern syntax (mutt's regular
// expressions, notmuch's query parser) takes literally.
var muaPlainSubject = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9 ]{9,}$`)

// muaHam returns the first n messages of the corpus's .easy_ham/cur, in
// name order, that have a plain Subject no other chosen Subject contains,
// and a Message-ID of their own: a search for either finds that message
// and no other.
func muaHam(t *testing.T, n int) []muaMessage {
	t.Helper()
	dir := filepath.Join(harness.Corpus(t), "spamassassin", ".easy_ham", "cur")
	var msgs []muaMessage
	for _, name := range readNames(t, dir) {
		m, ok := muaReadMessage(t, filepath.Join(dir, name))
		if ok && muaDistinct(m, msgs) {
			msgs = append(msgs, m)
		}
		if len(msgs) == n {
			return msgs
		}
	}
	t.Fatalf("%s has only %d messages with a plain Subject, want %d", dir, len(msgs), n)
	return nil
}

func muaReadMessage(t *testing.T, path string) (muaMessage, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return muaMessage{}, false
	}
	m := muaMessage{
		name:      filepath.Base(path),
		subject:   msg.Header.Get("Subject"),
		messageID: strings.Trim(msg.Header.Get("Message-Id"), "<> "),
		data:      data,
	}
	return m, muaPlainSubject.MatchString(m.subject) && m.messageID != ""
}

func muaDistinct(m muaMessage, chosen []muaMessage) bool {
	for _, c := range chosen {
		if c.messageID == m.messageID || strings.Contains(c.subject, m.subject) || strings.Contains(m.subject, c.subject) {
			return false
		}
	}
	return true
}

// muaMount mounts a fresh store with --user tester and returns the
// mount, whose root is the user's Maildir++ tree.
func muaMount(t *testing.T) *harness.Mount {
	t.Helper()
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	return harness.Start(t, store, t.TempDir(), "--user", "tester")
}

// muaMaildir creates a Maildir++ root on the local disk with the folders
// packdir creates in a new user's tree, to compare a mount against.
func muaMaildir(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, sub := range []string{"tmp", "new", "cur"} {
		muaMkdir(t, filepath.Join(root, sub))
	}
	for _, folder := range []string{".Draft", ".Outbox", ".Trash"} {
		muaFolder(t, root, folder)
	}
	return root
}

// muaFolder creates the Maildir++ folder root/folder, as an MUA does.
func muaFolder(t *testing.T, root, folder string) {
	t.Helper()
	for _, sub := range []string{"tmp", "new", "cur"} {
		muaMkdir(t, filepath.Join(root, folder, sub))
	}
	if err := os.WriteFile(filepath.Join(root, folder, "maildirfolder"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func muaMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// muaDeliver delivers data as an MDA does: written and fsynced in
// dir/tmp, then renamed to dir/sub/name (sub is new or cur). It returns
// the final path.
func muaDeliver(t *testing.T, dir, sub, name string, data []byte) string {
	t.Helper()
	tmp := filepath.Join(dir, "tmp", strings.SplitN(name, ":", 2)[0])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, sub, name)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	return final
}

// muaFile is one message file of a Maildir++ tree.
type muaFile struct {
	folder string // "" for INBOX, else ".Name"
	sub    string // new or cur
	name   string
	sum    string // SHA-256 of the bytes, hex
}

// path returns the file's path below root.
func (f muaFile) path(root string) string {
	return filepath.Join(root, f.folder, f.sub, f.name)
}

// flags returns the Maildir flags of the file's name (after ":2,").
func (f muaFile) flags() string {
	_, flags, _ := strings.Cut(f.name, ":2,")
	return flags
}

// muaFiles lists the messages in new/ and cur/ of INBOX and of every
// Maildir++ folder below root, sorted by folder, sub and name.
func muaFiles(t *testing.T, root string) []muaFile {
	t.Helper()
	folders := []string{""}
	for _, name := range readNames(t, root) {
		if strings.HasPrefix(name, ".") && muaIsDir(filepath.Join(root, name, "cur")) {
			folders = append(folders, name)
		}
	}
	var files []muaFile
	for _, folder := range folders {
		for _, sub := range []string{"new", "cur"} {
			for _, name := range readNames(t, filepath.Join(root, folder, sub)) {
				f := muaFile{folder: folder, sub: sub, name: name}
				f.sum = fileSum(t, f.path(root))
				files = append(files, f)
			}
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path("") < files[j].path("") })
	return files
}

func muaIsDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// muaSum is the hex SHA-256 of data, as muaFile.sum.
func muaSum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// muaRun runs a mail program with extra environment variables and
// returns its standard output; a non-zero exit fails the test with both
// outputs.
func muaRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	return muaRunStdin(t, env, "", name, args...)
}

// muaRunStdin is muaRun with stdin as the program's standard input.
func muaRunStdin(t *testing.T, env []string, stdin, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), muaTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}
