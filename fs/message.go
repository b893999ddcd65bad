package fs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
)

// messageFile is an open sealed message: immutable bytes, verified
// against their checksum when opened.
type messageFile struct {
	m *backend.Message
}

func (mf *messageFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	b := mf.m.Bytes()
	if off >= int64(len(b)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(b)))
	return fuse.ReadResultData(b[off:end]), 0
}
