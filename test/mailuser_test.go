package test

import (
	"os"
	"path/filepath"
	"testing"
)

// mailUserDir returns a new t.TempDir() that a process running as a mail
// user who is not root (a delivery program's recipient, Dovecot's mail
// user) can reach: it and each directory above it without search
// permission for others (a private TMPDIR, t.TempDir's 0700 parent) get
// o+x, which lets the mail user pass through but not list. The modes are
// restored when the test ends.
func mailUserDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o001 == 0 {
			if err := os.Chmod(d, mode|0o001); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(d, mode) })
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
