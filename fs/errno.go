package fs

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/packdir/packdir/backend"
)

// errnoOf maps a backend error to the errno a mail program expects. It is
// the one place errors become errnos; what is not an expected outcome is
// logged here with its context.
func (f *FS) errnoOf(err error, op string, ino uint64, name string) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, m := range errnoMap {
		if errors.Is(err, m.err) {
			return m.errno
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if errno != syscall.ENOSPC && errno != syscall.EDQUOT {
			f.log.Warn(op+" failed", "ino", ino, "name", name, "err", err)
		}
		return errno
	}
	var corrupt *backend.CorruptError
	if errors.As(err, &corrupt) {
		f.log.Error(op+": damaged container", "ino", ino, "name", name,
			"container", corrupt.Container, "offset", corrupt.Offset, "reason", corrupt.Reason)
		return syscall.EIO
	}
	f.log.Error(op+" failed", "ino", ino, "name", name, "err", err)
	return syscall.EIO
}

var errnoMap = []struct {
	err   error
	errno syscall.Errno
}{
	{backend.ErrNotFound, syscall.ENOENT},
	{backend.ErrExists, syscall.EEXIST},
	{backend.ErrNotEmpty, syscall.ENOTEMPTY},
	{backend.ErrNotDir, syscall.ENOTDIR},
	{backend.ErrIsDir, syscall.EISDIR},
	{backend.ErrInvalid, syscall.EINVAL},
	{backend.ErrNameTooLong, syscall.ENAMETOOLONG},
	{backend.ErrNotPermitted, syscall.EPERM},
	{backend.ErrNoSpace, syscall.ENOSPC},
	{backend.ErrTooBig, syscall.EFBIG},
	{backend.ErrQuota, syscall.EDQUOT},
	{backend.ErrClosed, syscall.EIO},
}

// discardLogger is used when no logger is given.
var discardLogger = slog.New(slog.DiscardHandler)
