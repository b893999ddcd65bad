package fs

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lockedBuffer collects the daemon's log lines for a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProbeSpoolLost: a side file whose spool file is removed behind the
// running daemon's back (an admin "cleaning" STORE/spool) has lost its
// bytes. Before, the mount showed it as an empty file: stat said 0 bytes,
// cat read nothing, a write failed with ENOENT, and nothing was logged.
// Want what a damaged message gets: EIO for that file only, and a log
// line naming its spool file.
func TestProbeSpoolLost(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	var logs lockedBuffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	mnt, _ := mountStore(t, storeDir, opts)
	lost := filepath.Join(mnt, "dovecot-uidlist")
	kept := filepath.Join(mnt, "subscriptions")
	writeFile(t, lost, bytes.Repeat([]byte("3 V1 N1\n"), 100))
	writeFile(t, kept, []byte("Trash\n"))
	ino := lstat(t, lost).Ino
	// A fresh mount, so that the kernel has cached neither the file's
	// attributes nor its pages.
	remount(t, opts)
	spool := filepath.Join(storeDir, "spool", fmt.Sprintf("%016x", ino))
	if err := os.Remove(spool); err != nil {
		t.Fatal(err)
	}

	_, err := os.Stat(lost)
	wantErrno(t, "stat of the lost file", err, syscall.EIO)
	b, err := os.ReadFile(lost)
	wantErrno(t, fmt.Sprintf("read of the lost file (got %d bytes)", len(b)), err, syscall.EIO)
	err = os.WriteFile(lost, []byte("x"), 0o600)
	wantErrno(t, "write to the lost file", err, syscall.EIO)
	checkContent(t, kept, []byte("Trash\n"))
	if !strings.Contains(logs.String(), spool) {
		t.Errorf("no log line names %s; the log:\n%s", spool, logs.String())
	}

	// The mount repairs it, as the README says: an empty file, logged.
	remount(t, opts)
	checkContent(t, lost, nil)
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
}
