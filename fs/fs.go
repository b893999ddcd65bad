package fs

import (
	"cmp"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/packdir/packdir/backend"
)

// Options configure a mount.
type Options struct {
	// User, if set, makes that user's Maildir++ tree the mount root;
	// otherwise the root lists the users.
	User string
	// AllowOther lets other users (the mail user, setuid delivery
	// programs) use the mount, with the kernel checking permissions.
	AllowOther bool
	// Debug logs every FUSE request, to DebugLog or else to stderr.
	Debug    bool
	DebugLog *log.Logger
	Logger   *slog.Logger
	// MaxInodes bounds the files the kernel may remember before some
	// are pruned (see evictor); 0 means DefaultMaxInodes.
	MaxInodes int
}

// FS is a mounted store.
type FS struct {
	store  *backend.Store
	log    *slog.Logger
	server *fuse.Server
	root   *node
	evict  *evictor
	// messages holds the verified bytes of the messages being read.
	messages *msgCache
	// idle are the files waiting for their idle commit (node.idle).
	idle idleCommits
	// inPlace counts the files written in place in new/ or cur/ that
	// wait for their seal, against their owners' quotas.
	inPlace inPlace
	// failed are the files whose seal failed, for unmount to try again.
	failed failedSeals
	// fileLocks serialize the changes to a file's bytes and its commit
	// (see fileLock).
	fileLocks [64]sync.Mutex
	// rootUID and rootGID own the store root, which has no owner of its own.
	rootUID, rootGID uint32
}

// Mount mounts store on dir and returns once the kernel serves it. The
// caller keeps the store open until Unmount has returned.
func Mount(store *backend.Store, dir string, opts Options) (*FS, error) {
	f := &FS{store: store, log: opts.Logger, messages: newMsgCache(msgCacheBytes),
		rootUID: uint32(os.Getuid()), rootGID: uint32(os.Getgid())}
	if f.log == nil {
		f.log = discardLogger
	}
	rootIno := backend.RootIno
	if opts.User != "" {
		u, err := store.User(opts.User)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", opts.User, err)
		}
		rootIno = u.Ino
	}
	root := &node{fsys: f, ino: rootIno}
	f.root = root
	f.evict = newEvictor(cmp.Or(opts.MaxInodes, DefaultMaxInodes))
	mopts := f.mountOptions(store, opts)
	server, err := serve(dir, root, mopts)
	if err != nil {
		f.evict.stop()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	f.server = server
	return f, nil
}

// serve mounts root on dir and serves it, as gofs.Mount does, except that
// a mount that cannot be used is undone. gofs.Mount returns the error of
// go-fuse's first look into the new mount (it opens a file in the root)
// with the kernel mount left in place, dead once the process exits; that
// look fails with EACCES when a user other than root mounts another uid's
// tree, since the kernel checks permissions (default_permissions).
func serve(dir string, root gofs.InodeEmbedder, opts *gofs.Options) (*fuse.Server, error) {
	server, err := fuse.NewServer(gofs.NewNodeFS(root, opts), dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		if uerr := server.Unmount(); uerr != nil {
			return nil, fmt.Errorf("%w; unmounting it again failed too: %v", err, uerr)
		}
		return nil, err
	}
	return server, nil
}

// Timeouts for the kernel's caches of names and attributes. Every change
// goes through this mount, and the kernel drops what a change makes stale,
// so they can be long: with 10 s, a flag pass over a large folder repeated
// the LOOKUPs and GETATTRs of a scan made a little earlier. An hour bounds
// how long a stale entry could live if a bug ever let one through.
const (
	entryTimeout    = time.Hour
	attrTimeout     = time.Hour
	negativeTimeout = time.Hour
)

func (f *FS) mountOptions(store *backend.Store, opts Options) *gofs.Options {
	et, at, nt := entryTimeout, attrTimeout, negativeTimeout
	mo := &gofs.Options{
		EntryTimeout:    &et,
		AttrTimeout:     &at,
		NegativeTimeout: &nt,
		// Mode 0000 is a mode: go-fuse would otherwise answer 0644 (0755
		// for a directory) for it, and a file its owner locked would be
		// readable by everyone (issue 14, item 13).
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			AllowOther:  opts.AllowOther,
			FsName:      store.Dir(),
			Name:        "packdir",
			Debug:       opts.Debug,
			Logger:      opts.DebugLog,
			DirectMount: os.Geteuid() == 0,
			MaxWrite:    1 << 20,
			// Reads answer with bytes, never with a file descriptor, and
			// go-fuse tries a splice for every read reply unless told not
			// to: a pipe taken, grown, written and drained for nothing,
			// four system calls per READ.
			DisableSplice: true,
			// Locks are left to the kernel, which keeps fcntl and flock
			// locks among local processes as on a local filesystem.
			EnableLocks: false,
		},
	}
	mo.MountOptions.Options = append(mo.MountOptions.Options, "default_permissions")
	return mo
}

// Wait blocks until the filesystem is unmounted and the files changed in
// new/ or cur/ without a handle are committed, or logged as not sealed.
func (f *FS) Wait() {
	f.server.Wait()
	f.evict.stop()
	f.idle.flush()
	f.resealFailed()
}

// Unmount asks the kernel to unmount, waiting for open files to close.
func (f *FS) Unmount() error { return f.server.Unmount() }

// Statfs reports the space of the disk under the store, as a local
// filesystem would.
func (n *node) Statfs(ctx contextT, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fsys.store.Dir(), &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	out.NameLen = backend.MaxNameLen
	return 0
}
