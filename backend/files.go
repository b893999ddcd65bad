package backend

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Every file of a store is opened through openFile, and Open checks the
// store's own entries with checkLayout, so that a symbolic link planted
// inside a store (index.db, a container, spool/) is refused instead of
// followed: the daemon would read, create or append to a file elsewhere,
// with its own privileges. The store directory itself may be a link; it
// is what the administrator names.
//
// This is the one file of backend that names syscall flags: os has no
// O_NOFOLLOW.

// openFile is os.OpenFile that does not follow a symbolic link at path.
func openFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, symlinkError(path)
	}
	return f, err
}

// lockStore takes a flock on the store directory, shared for a read-only
// open and exclusive otherwise, and fails with ErrInUse if another
// process holds it. bbolt's own lock is on index.db, and that file can be
// removed under a running packdir: a second one would then create its
// own index and append to the same containers. The directory cannot be
// replaced under the open store while the store is in it.
func lockStore(dir string, readOnly bool) (*os.File, error) {
	// The store's path itself may be a link (/srv/mail/store -> /data);
	// what is inside it may not.
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	how := syscall.LOCK_EX
	if readOnly {
		how = syscall.LOCK_SH
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, dir)
		}
		return nil, fmt.Errorf("backend: lock %s: %w", dir, err)
	}
	return f, nil
}

func symlinkError(path string) error {
	return fmt.Errorf("%w: %s; packdir follows no link inside a store (put the file itself there)", ErrSymlink, path)
}

// storeEntries are the names a store directory holds, and whether each is
// a directory.
var storeEntries = []struct {
	name string
	dir  bool
}{{"store.json", false}, {"index.db", false}, {"state", false}, {"containers", true}, {"spool", true}}

// checkLayout refuses a store whose own entries are symbolic links or of
// the wrong type. Missing entries are left to the code that needs them.
func checkLayout(dir string) error {
	for _, e := range storeEntries {
		path := filepath.Join(dir, e.name)
		fi, err := os.Lstat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("backend: %w", err)
		case fi.Mode()&os.ModeSymlink != 0:
			return symlinkError(path)
		case fi.IsDir() != e.dir:
			return fmt.Errorf("backend: %s is not a %s", path, map[bool]string{true: "directory", false: "regular file"}[e.dir])
		}
	}
	return nil
}

// readFile is os.ReadFile through openFile.
func readFile(path string) ([]byte, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// stillLinked returns an error if open file f, the active container, has
// no name any more (deleted by hand while the store is open): what is
// appended to it would vanish when it is closed, so no append to it may
// be acknowledged as durable.
func stillLinked(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return fmt.Errorf("%w: %s was deleted while open", ErrContainerMissing, path)
	}
	return nil
}
