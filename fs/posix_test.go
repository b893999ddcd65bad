package fs

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixExcluded are the posixtest cases that do not apply to a Maildir
// filesystem, with the reason. Every other case passes.
var posixExcluded = map[string]string{
	// Takes a write lock with F_SETLK on one descriptor and expects a
	// second descriptor of the same process to conflict. POSIX record
	// locks belong to the process, so they do not conflict, and the test
	// fails on ext4 and tmpfs too; it holds only for go-fuse's loopback,
	// which turns them into OFD locks. Locks here are the kernel's, with
	// local semantics: TestSideFiles checks fcntl between processes, OFD
	// locks and flock.
	"FcntlFlockLocksFile": "POSIX locks of one process do not conflict; fails on ext4 too",
	// No extended attributes are stored; setxattr fails with EOPNOTSUPP
	// (TestNoXattr). No Maildir program needs them.
	"XAttr":      "no extended attributes",
	"XAttrLarge": "no extended attributes",
	// O_TMPFILE is not offered (the kernel says EOPNOTSUPP, and glibc
	// and programs fall back to a named file); Maildir delivery is by
	// named files in tmp/. The case skips itself without it.
	"Tmpfile": "no O_TMPFILE",
}

// TestPosix runs go-fuse's POSIX conformance cases, each on a fresh
// mount, in two places: an empty directory at the user's Maildir root,
// where every file is a side file, and the (empty) INBOX cur/, where a
// file written in place is committed as a message once idle, and a
// file renamed or linked in is delivered. Many cases expect to start from
// an empty directory, hence not the Maildir root itself. Not parallel
// with the other tests: FdLeak compares this process's open descriptors.
func TestPosix(t *testing.T) {
	var cases []string
	for name := range posixtest.All {
		cases = append(cases, name)
	}
	sort.Strings(cases)
	for _, where := range []string{"side", "cur"} {
		t.Run(where, func(t *testing.T) {
			for _, name := range cases {
				t.Run(name, func(t *testing.T) {
					if why, ok := posixExcluded[name]; ok {
						t.Skip(why)
					}
					mnt, _ := mountT(t)
					dir := filepath.Join(mnt, "cur")
					if where == "side" {
						dir = filepath.Join(mnt, "posix")
						must(t, os.Mkdir(dir, 0o755))
					}
					posixtest.All[name](t, dir)
				})
			}
		})
	}
}
