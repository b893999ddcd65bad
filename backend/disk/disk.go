// Package disk is what the backend asks the file system about space: is
// an error "no space left", and give a file blocks of its own. It is the
// one place under backend/ that speaks in errno values, so that the
// store's code does not.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// NoSpace reports whether err is the file system's ENOSPC.
func NoSpace(err error) bool { return errors.Is(err, unix.ENOSPC) }

// Allocate gives f blocks for its first size bytes, so that the space is
// taken from the file system now and cannot be taken by anyone else. It
// writes zeros where fallocate(2) is not supported.
func Allocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = writeZeros(f, size)
	}
	if err != nil {
		return fmt.Errorf("allocate %d bytes to %s: %w", size, f.Name(), err)
	}
	return nil
}

func writeZeros(f *os.File, size int64) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return err
		}
	}
	return nil
}

// NoFollow is the open flag that refuses a symbolic link.
const NoFollow = unix.O_NOFOLLOW

// Allocated is the disk space a file takes, which for a sparse file (as
// bbolt grows index.db) is less than its size.
func Allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*unix.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
