package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
)

// messageFile is an open sealed message: immutable bytes, verified
// against their checksum when first read. It is opened with
// FOPEN_KEEP_CACHE, so a message whose pages the kernel still holds is
// read again without a READ, and so without reading the container: open
// only checks the index, and the record is loaded on the first READ.
type messageFile struct {
	n *node

	once sync.Once
	m    *backend.Message
	err  error
}

// load reads and verifies the message, once per handle. A damaged record
// makes every read of this handle fail with EIO.
func (mf *messageFile) load() ([]byte, syscall.Errno) {
	mf.once.Do(func() { mf.m, mf.err = mf.n.store().OpenMessage(mf.n.ino) })
	if mf.err != nil {
		return nil, mf.n.errno(mf.err, "read", "")
	}
	return mf.m.Bytes(), 0
}

func (mf *messageFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	b, errno := mf.load()
	if errno != 0 {
		return nil, errno
	}
	if off >= int64(len(b)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(b)))
	return fuse.ReadResultData(b[off:end]), 0
}
