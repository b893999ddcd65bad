package fs

import (
	"errors"
	"fmt"

	"github.com/packdir/packdir/backend"
)

// DefaultFolders are created for every new user, besides INBOX.
var DefaultFolders = []string{".Draft", ".Outbox", ".Trash"}

// AddUser adds user name to the store with an empty Maildir++ tree: INBOX
// (tmp, new, cur at the top) and DefaultFolders, each with its
// maildirfolder file, all owned by uid and gid.
func AddUser(s *backend.Store, name string, uid, gid uint32) (backend.User, error) {
	if err := checkUserName(name); err != nil {
		return backend.User{}, err
	}
	u, err := s.AddUser(name, uid, gid)
	if err != nil {
		return u, fmt.Errorf("add user %s: %w", name, err)
	}
	if err := makeMaildir(s, u.Ino, uid, gid); err != nil {
		return u, err
	}
	for _, folder := range DefaultFolders {
		d, err := s.Mkdir(u.Ino, folder, 0o700, uid, gid)
		if err != nil {
			return u, fmt.Errorf("add user %s: folder %s: %w", name, folder, err)
		}
		if err := makeMaildir(s, d.Ino, uid, gid); err != nil {
			return u, err
		}
		if _, err := s.Create(d.Ino, "maildirfolder", 0o600, uid, gid); err != nil {
			return u, fmt.Errorf("add user %s: folder %s: %w", name, folder, err)
		}
	}
	return u, s.Sync()
}

func makeMaildir(s *backend.Store, dir uint64, uid, gid uint32) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if _, err := s.Mkdir(dir, sub, 0o700, uid, gid); err != nil {
			return fmt.Errorf("maildir %s: %w", sub, err)
		}
	}
	return nil
}

// checkUserName accepts the names useradd accepts, roughly: they become
// directory names and appear in paths.
func checkUserName(name string) error {
	if name == "" || len(name) > 32 {
		return errors.New("a user name has 1 to 32 characters")
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' ||
			i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')
		if !ok {
			return fmt.Errorf("user name %q: use letters, digits, '_', '-' and '.', starting with a letter or '_'", name)
		}
	}
	return nil
}
