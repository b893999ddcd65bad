package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/packdir/packdir/backend"
)

// TestQuotaEDQUOT: a delivery that would pass the owner's quota fails
// with EDQUOT at the rename into new/, the message stays in tmp/ and
// everything delivered before is intact; once over quota, writes in tmp/
// fail with EDQUOT too; deleting mail makes room again. Contract:
// "EDQUOT over quota".
func TestQuotaEDQUOT(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	uid := uint32(os.Getuid())
	if err := s.SetQuota(uid, backend.Quota{Bytes: 3000, Messages: 3}); err != nil {
		t.Fatal(err)
	}
	msg := func(i int) []byte { return []byte(fmt.Sprintf("Subject: %d\n\n%s", i, bytes.Repeat([]byte("q"), 900))) }
	for i := 0; i < 3; i++ {
		deliver(t, mnt, "new", fmt.Sprintf("m%d", i), msg(i))
	}
	tmp := filepath.Join(mnt, "tmp", "m3")
	writeFile(t, tmp, msg(3))
	wantErrno(t, "rename over the message quota", os.Rename(tmp, filepath.Join(mnt, "new", "m3")), syscall.EDQUOT)
	if got := readFile(t, tmp); !bytes.Equal(got, msg(3)) {
		t.Fatalf("tmp file after EDQUOT holds %q", got)
	}
	wantErrno(t, "link over the message quota", os.Link(tmp, filepath.Join(mnt, "cur", "m3")), syscall.EDQUOT)
	// Over quota (3 messages, limit lowered to 2): a write in tmp/ fails,
	// a side file stays writable.
	if err := s.SetQuota(uid, backend.Quota{Messages: 2}); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "write in tmp/ over quota", os.WriteFile(filepath.Join(mnt, "tmp", "m4"), msg(4), 0o600), syscall.EDQUOT)
	writeFile(t, filepath.Join(mnt, "dovecot-uidlist"), []byte("3 V1 N4\n"))
	if err := s.SetQuota(uid, backend.Quota{Bytes: 3000, Messages: 3}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got := readFile(t, filepath.Join(mnt, "new", fmt.Sprintf("m%d", i))); !bytes.Equal(got, msg(i)) {
			t.Fatalf("message %d damaged after EDQUOT", i)
		}
	}
	if err := os.Remove(filepath.Join(mnt, "new", "m0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mnt, "new", "m3")); err != nil {
		t.Fatalf("rename after deleting a message: %v", err)
	}
	// Bytes: 3 messages of ~915 bytes fit 3000; raise the count limit
	// and a fourth passes the byte limit.
	if err := s.SetQuota(uid, backend.Quota{Bytes: 3000}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tmp, msg(5))
	wantErrno(t, "rename over the byte quota", os.Rename(tmp, filepath.Join(mnt, "new", "m5")), syscall.EDQUOT)
	q, u, err := s.QuotaOf(uid)
	if err != nil || u.Messages != 3 || q.Bytes != 3000 {
		t.Fatalf("quota %+v usage %+v %v", q, u, err)
	}
}

// TestMaxMessageSizeEFBIG: a message over the store's size limit fails
// with EFBIG at the rename into new/ and nothing stored is changed.
func TestMaxMessageSizeEFBIG(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := backend.Init(dir, backend.Config{MaxMessageSize: 4096}); err != nil {
		t.Fatal(err)
	}
	mnt, _ := mountStore(t, dir)
	small := deliver(t, mnt, "new", "small", []byte("Subject: small\n\nok\n"))
	tmp := filepath.Join(mnt, "tmp", "big")
	writeFile(t, tmp, bytes.Repeat([]byte("b"), 4097))
	wantErrno(t, "rename of a message over the size limit", os.Rename(tmp, filepath.Join(mnt, "new", "big")), syscall.EFBIG)
	if got := readFile(t, small); string(got) != "Subject: small\n\nok\n" {
		t.Fatalf("stored message changed: %q", got)
	}
	if len(readFile(t, tmp)) != 4097 {
		t.Fatal("tmp file changed after EFBIG")
	}
}

// TestStoreFullENOSPC: at its container limit the store refuses new
// messages with ENOSPC, keeps what it holds, and still lets mail be
// deleted.
func TestStoreFullENOSPC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := backend.Init(dir, backend.Config{ContainerSize: 64 << 10, MaxContainers: 1}); err != nil {
		t.Fatal(err)
	}
	mnt, _ := mountStore(t, dir)
	body := func(i int) []byte {
		return []byte(fmt.Sprintf("Subject: %d\n\n%s", i, bytes.Repeat([]byte("f"), 8000)))
	}
	var i int
	var err error
	for i = 0; i < 20; i++ {
		tmp := filepath.Join(mnt, "tmp", fmt.Sprintf("f%d", i))
		writeFile(t, tmp, body(i))
		if err = os.Rename(tmp, filepath.Join(mnt, "new", fmt.Sprintf("f%d", i))); err != nil {
			break
		}
	}
	wantErrno(t, "delivery into a full store", err, syscall.ENOSPC)
	for j := 0; j < i; j++ {
		if got := readFile(t, filepath.Join(mnt, "new", fmt.Sprintf("f%d", j))); !bytes.Equal(got, body(j)) {
			t.Fatalf("message %d damaged in a full store", j)
		}
	}
	if err := os.Remove(filepath.Join(mnt, "new", "f0")); err != nil {
		t.Fatalf("unlink in a full store: %v", err)
	}
}
