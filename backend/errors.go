package backend

import (
	"errors"
	"fmt"
)

// Errors returned by Store methods. Package fs maps each to one errno.
var (
	// ErrNotFound is returned when a name or inode does not exist.
	ErrNotFound = errors.New("backend: not found")
	// ErrExists is returned when a name that must be new already exists.
	ErrExists = errors.New("backend: already exists")
	// ErrNotEmpty is returned when removing or replacing a non-empty directory.
	ErrNotEmpty = errors.New("backend: directory not empty")
	// ErrNotDir is returned when a directory was required.
	ErrNotDir = errors.New("backend: not a directory")
	// ErrIsDir is returned when a non-directory was required.
	ErrIsDir = errors.New("backend: is a directory")
	// ErrInvalid is returned for an operation that makes no sense, such as
	// moving a directory into itself.
	ErrInvalid = errors.New("backend: invalid argument")
	// ErrNameTooLong is returned for a name longer than MaxNameLen bytes.
	ErrNameTooLong = errors.New("backend: name too long")
	// ErrNotPermitted is returned for hard links to directories.
	ErrNotPermitted = errors.New("backend: operation not permitted")
	// ErrNoSpace is returned when the store has reached its container limit,
	// and for new data when its disk is full down to the store's reserve.
	ErrNoSpace = errors.New("backend: store is full")
	// ErrQuota is returned when a commit would take a uid past its quota,
	// and for writes to its spooled files once it is over.
	ErrQuota = errors.New("backend: quota exceeded")
	// ErrTooBig is returned for a message over the store's size limit.
	ErrTooBig = errors.New("backend: message too big")
	// ErrInUse is returned by Open when another process has the store open.
	ErrInUse = errors.New("backend: store is in use by another process")
	// ErrFormat is returned by Open for a store of an unknown format version.
	ErrFormat = errors.New("backend: unknown store format")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("backend: store is closed")
	// ErrSymlink is returned by Open when a file or directory inside the
	// store is a symbolic link, which packdir never follows.
	ErrSymlink = errors.New("backend: symbolic link inside the store")
	// ErrNoConfig is returned by Open and Init for a directory that holds
	// a store's containers or index but no store.json: the store lost its
	// identity and limits, and a new ones would not match its containers.
	ErrNoConfig = errors.New("backend: store.json is missing")
	// ErrContainerMissing is returned by Open when the index names a
	// container whose file is not there.
	ErrContainerMissing = errors.New("backend: container file is missing")
	// ErrReadOnly is returned for a change to a store opened read-only.
	ErrReadOnly = errors.New("backend: store is open read-only")
	// ErrSpoolLost is returned for a spooled file whose spool file was
	// removed behind the store's back: its bytes are gone. The next Open
	// recreates the file empty, and says so.
	ErrSpoolLost = errors.New("backend: spool file is missing, its bytes are lost (mount again to recreate it empty)")
)

// CorruptError reports damaged bytes in a container, with their location.
type CorruptError struct {
	Container uint32
	Offset    int64
	Reason    string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("backend: container %d offset %d: %s", e.Container, e.Offset, e.Reason)
}

// IndexError reports an index entry that contradicts another.
type IndexError struct {
	Reason string
}

func (e *IndexError) Error() string { return "backend: index: " + e.Reason }
