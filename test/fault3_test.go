package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/test/harness"
)

// TestFault3UnsealedReported (issue 14, item 3): a message written in
// place in cur/ whose seal fails (here because the store is full) is
// logged with its inode and name, while mounted and again at unmount,
// and stays visible: `packdir stats` counts it (and names it with
// --json), `packdir fsck` reports it as a problem.
func TestFault3UnsealedReported(t *testing.T) {
	harness.RequireFuse(t)
	store := filepath.Join(t.TempDir(), "store")
	mnt := t.TempDir()
	harness.Run(t, "init", "--container-size", "64KiB", "--max-containers", "1", store)
	harness.Run(t, "user", "add", "alice", store)
	m := harness.Start(t, store, mnt, "--user", "alice")
	fillStore(t, mnt)

	name := "1700000000.M1P1.inplace:2,S"
	msg := []byte("Subject: written in place\n\n" + strings.Repeat("w", 16000))
	if err := os.WriteFile(filepath.Join(mnt, "cur", name), msg, 0o600); err != nil {
		t.Fatalf("write in place into cur/: %v", err)
	}
	logged := func() bool {
		for _, line := range strings.Split(m.Output(), "\n") {
			if strings.Contains(line, name) && strings.Contains(line, "ino=") && strings.Contains(line, "not sealed") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("no log line names the failed seal of %s; daemon output:\n%s", name, m.Output())
	}
	m.Stop(t)

	path := "/alice/cur/" + name
	out := harness.Run(t, "stats", store)
	if !regexp.MustCompile(`(?m)^unsealed files in new/ or cur/\s+1\b`).MatchString(out) {
		t.Errorf("packdir stats does not count the unsealed file:\n%s", out)
	}
	var st struct {
		Unsealed []struct {
			Ino  uint64 `json:"ino"`
			Path string `json:"path"`
		} `json:"unsealed"`
	}
	if err := json.Unmarshal([]byte(harness.Run(t, "stats", "--json", store)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Unsealed) != 1 || st.Unsealed[0].Path != path || st.Unsealed[0].Ino == 0 {
		t.Errorf("packdir stats --json: unsealed %+v, want %s", st.Unsealed, path)
	}
	stdout, _, code := harness.RunExit(t, "fsck", store)
	if code != 1 || !strings.Contains(stdout, "problem: ") || !strings.Contains(stdout, path) {
		t.Errorf("packdir fsck: exit %d, want 1 and a problem naming %s:\n%s", code, path, stdout)
	}
}

// fillStore delivers messages into new/ until the store is full.
func fillStore(t *testing.T, mnt string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		tmp := filepath.Join(mnt, "tmp", fmt.Sprintf("fill%d", i))
		body := fmt.Sprintf("Subject: %d\n\n%s", i, bytes.Repeat([]byte("f"), 8000))
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		err := os.Rename(tmp, filepath.Join(mnt, "new", fmt.Sprintf("fill%d", i)))
		if errors.Is(err, syscall.ENOSPC) {
			if err := os.Remove(tmp); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("the store is not full after 100 deliveries")
}

// TestFault3InitContainerSize (issue 14, item 3): a store whose
// containers cannot hold a message of its maximum size is refused in one
// line, and nothing is created; without --max-message-size, a small
// container size gets a limit that fits it.
func TestFault3InitContainerSize(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	wantCLIError(t, []string{"init", "--container-size", "1MiB", "--max-message-size", "2MiB", store}, 1,
		"container size 1048576", "2097152")
	wantCLIError(t, []string{"init", "--container-size", "64MiB", "--max-message-size", "64MiB", store}, 1,
		"container size 67108864", "67108864")
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("a refused init left %s behind (stat: %v)", store, err)
	}
	if err := backend.Init(store, backend.Config{ContainerSize: 1 << 20, MaxMessageSize: 2 << 20}); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("backend.Init with containers smaller than a message: %v, want a one-line error", err)
	}

	harness.Run(t, "init", "--container-size", "1MiB", store)
	var cfg backend.Config
	b, err := os.ReadFile(filepath.Join(store, "store.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxMessageSize <= 0 || cfg.MaxMessageSize+96 > cfg.ContainerSize {
		t.Errorf("init --container-size 1MiB: max message size %d, container size %d: a message of the maximum size does not fit",
			cfg.MaxMessageSize, cfg.ContainerSize)
	}
}
