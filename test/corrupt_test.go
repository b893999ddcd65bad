package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/backend/record"
	"github.com/packdir/packdir/test/harness"
)

// TestCorruptMessageContained flips a byte inside one stored message:
// `packdir fsck` exits non-zero naming the container file, the offset and
// both paths of the (hard-linked) message; through the mount that message
// reads as EIO and the daemon logs the container and offset, every other
// message reads as delivered, and the daemon keeps serving.
func TestCorruptMessageContained(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	msgs := corpusMessages(t, ".easy_ham", 30)
	names := deliverAll(t, mnt, msgs)
	victim := names[17]
	mustDo(t, os.Link(filepath.Join(mnt, "cur", victim), filepath.Join(mnt, ".Trash", "cur", victim)))
	m.Stop(t)

	pack := filepath.Join(store, "containers", "00000001.pack")
	off := payloadOffset(t, pack, msgs[17])
	flipAt(t, pack, off+record.RecordHeaderSize+32+4+10) // a message byte, after key and uid

	stdout, stderr, code := harness.RunExit(t, "fsck", store)
	if code == 0 {
		t.Fatalf("fsck exits 0 on a damaged message:\n%s", stdout)
	}
	for _, p := range []string{"/tester/cur/" + victim, "/tester/.Trash/cur/" + victim} {
		want := fmt.Sprintf("damaged message %s (inode ", p)
		if !strings.Contains(stdout, want) || !strings.Contains(stdout, fmt.Sprintf("%s offset %d: ", pack, off)) {
			t.Errorf("fsck output lacks %q with %s offset %d:\n%s\n%s", want, pack, off, stdout, stderr)
		}
	}

	m = harness.Start(t, store, mnt, "--user", "tester")
	_, err := os.ReadFile(filepath.Join(mnt, "cur", victim))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the damaged message: %v, want EIO", err)
	}
	for i, name := range names {
		if i == 17 {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "cur", name)); err != nil || !bytes.Equal(got, msgs[i]) {
			t.Errorf("undamaged message %s: %v (%d bytes, want %d)", name, err, len(got), len(msgs[i]))
		}
	}
	deliverAll(t, mnt, [][]byte{[]byte("Subject: after\n\nstill serving\n")})
	m.Stop(t) // fails the test unless the daemon exits 0
	// The whole log is there once the daemon has exited: the read's EIO
	// can reach us before the line logged with it reaches the pipe.
	if log := m.Output(); !strings.Contains(log, fmt.Sprintf("container=1 offset=%d", off)) {
		t.Errorf("daemon log lacks container=1 offset=%d:\n%s", off, log)
	}
}

// deliveries numbers the messages deliverAll delivers, so that no two
// get the same name.
var deliveries int

// deliverAll delivers msgs into cur/ (tmp, rename to new, to cur as seen)
// and returns their names.
func deliverAll(t *testing.T, mnt string, msgs [][]byte) []string {
	t.Helper()
	var names []string
	for _, data := range msgs {
		deliveries++
		name := fmt.Sprintf("%d.M%dP%d.corrupt", time.Now().Unix(), deliveries, os.Getpid())
		tmp := filepath.Join(mnt, "tmp", name)
		mustDo(t, os.WriteFile(tmp, data, 0o600))
		mustDo(t, os.Rename(tmp, filepath.Join(mnt, "new", name)))
		mustDo(t, os.Rename(filepath.Join(mnt, "new", name), filepath.Join(mnt, "cur", name+":2,S")))
		names = append(names, name+":2,S")
	}
	return names
}

// payloadOffset finds the record holding msg in a container file.
func payloadOffset(t *testing.T, pack string, msg []byte) int64 {
	t.Helper()
	data, err := os.ReadFile(pack)
	mustDo(t, err)
	sc := record.NewScanner(bytes.NewReader(data[record.HeaderSize:]), record.HeaderSize, 1<<30)
	for sc.Next() {
		r := sc.Record()
		if r.Type != record.TypePayload {
			continue
		}
		if _, data, err := record.DecodePayload(r, 1<<30); err == nil && bytes.Equal(data, msg) {
			return sc.Offset()
		}
	}
	t.Fatalf("no payload record in %s holds the message (scan: %v)", pack, sc.Err())
	return 0
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	mustDo(t, err)
	data[off] ^= 0x01
	mustDo(t, os.WriteFile(path, data, 0o600))
}

// TestDamagedIndexRefused damages index.db (garbage, then a truncated
// file): `packdir mount` refuses with one line that points to `packdir
// fsck --rebuild`, and after the rebuild the tree is exactly as before.
func TestDamagedIndexRefused(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "tester", store)
	m := harness.Start(t, store, mnt, "--user", "tester")
	deliverAll(t, mnt, corpusMessages(t, ".easy_ham", 40))
	before := treeListing(t, mnt)
	m.Stop(t)

	idx := filepath.Join(store, "index.db")
	clean, err := os.ReadFile(idx)
	mustDo(t, err)
	for what, damaged := range map[string][]byte{
		"garbage":   bytes.Repeat([]byte("not bbolt"), len(clean)/9),
		"truncated": clean[:2*4096+100],
	} {
		mustDo(t, os.WriteFile(idx, damaged, 0o600))
		out, code := mountRefused(t, store, mnt)
		want := "run 'packdir fsck --rebuild " + store + "'"
		if code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, want) {
			t.Errorf("%s index.db: mount exits %d with\n%s\nwant one line containing %q", what, code, out, want)
		}
		harness.Run(t, "fsck", "--rebuild", store)
		m = harness.Start(t, store, mnt, "--user", "tester")
		if after := treeListing(t, mnt); after != before {
			t.Errorf("%s index.db: the tree differs after the rebuild:\n%s", what, diffLines(before, after))
		}
		m.Stop(t)
	}
}

// mountRefused runs `packdir mount` on a store it must refuse and returns
// its output and exit code. Should it mount after all, it is unmounted
// and ended by its PID after 20 seconds and the test fails.
func mountRefused(t *testing.T, store, mnt string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "mount", "--user", "tester", store, mnt)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("packdir mount ran on a damaged index:\n%s", out)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	return string(out), 0
}
