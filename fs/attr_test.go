package fs

import (
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/packdir/packdir/backend"
)

// TestSetattrKept: utimes, chmod and chown on a committed message (and on
// a side file and a folder) are kept, across a remount, and do not copy
// the message. Contract: "chmod / chown / utimes on a message".
func TestSetattrKept(t *testing.T) {
	t.Parallel()
	mnt, s := mountT(t)
	body := message("attrs", 4000)
	targets := []struct {
		name, path string
		mode       uint32 // file type
	}{
		{"message", deliver(t, mnt, "cur", "1700000000.M1P1.host:2,S", body), unix.S_IFREG},
		{"side file", filepath.Join(mnt, "subscriptions"), unix.S_IFREG},
		{"folder", filepath.Join(mnt, ".Trash"), unix.S_IFDIR},
	}
	writeFile(t, targets[1].path, []byte("Trash\n"))
	msgIno := lstat(t, targets[0].path).Ino
	waitSealed(t, s, msgIno)
	st0, err := s.Stats()
	must(t, err)

	times := []unix.Timespec{
		{Sec: 1600000000, Nsec: 123456789}, // atime
		{Sec: 1500000000, Nsec: 987654321}, // mtime
	}
	const mode, uid, gid = 0o640, 1234, 5678
	ctimes := map[string]int64{}
	for _, x := range targets {
		before := lstat(t, x.path)
		must(t, unix.Chmod(x.path, mode))
		must(t, unix.Chown(x.path, uid, gid))
		must(t, unix.UtimesNano(x.path, times))
		after := lstat(t, x.path)
		if after.Ctim.Nano() <= before.Ctim.Nano() {
			t.Errorf("%s: ctime went from %d to %d, want later", x.name, before.Ctim.Nano(), after.Ctim.Nano())
		}
		ctimes[x.name] = after.Ctim.Nano()
	}
	check := func(when string) {
		for _, x := range targets {
			st := lstat(t, x.path)
			if st.Mode != x.mode|mode || st.Uid != uid || st.Gid != gid {
				t.Errorf("%s %s: mode %o uid %d gid %d, want %o %d %d", when, x.name, st.Mode, st.Uid, st.Gid, x.mode|mode, uid, gid)
			}
			if st.Atim != times[0] || st.Mtim != times[1] {
				t.Errorf("%s %s: atime %v mtime %v, want %v %v", when, x.name, st.Atim, st.Mtim, times[0], times[1])
			}
			if st.Ctim.Nano() != ctimes[x.name] {
				t.Errorf("%s %s: ctime %d, want %d", when, x.name, st.Ctim.Nano(), ctimes[x.name])
			}
		}
		checkContent(t, targets[0].path, body)
		checkContent(t, targets[1].path, []byte("Trash\n"))
	}
	check("after setattr:")
	wantSealed(t, s, msgIno, "message after setattr")
	st1, err := s.Stats()
	must(t, err)
	if st1.Payloads != st0.Payloads || st1.ContainerBytes-st0.ContainerBytes > 4096 {
		t.Errorf("setattr stored data: payloads %d -> %d, container bytes %d -> %d",
			st0.Payloads, st1.Payloads, st0.ContainerBytes, st1.ContainerBytes)
	}
	s = remount(t)
	check("after remount:")
	wantSealed(t, s, msgIno, "message after remount")
}

// TestStatfs: df and Dovecot's quota checks see the disk under the store.
func TestStatfs(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	for _, p := range []string{mnt, filepath.Join(mnt, "cur")} {
		var st unix.Statfs_t
		must(t, unix.Statfs(p, &st))
		if st.Bsize <= 0 || st.Blocks == 0 || st.Bfree > st.Blocks || st.Bavail > st.Blocks {
			t.Errorf("statfs %s: bsize %d blocks %d bfree %d bavail %d", p, st.Bsize, st.Blocks, st.Bfree, st.Bavail)
		}
		if st.Namelen != backend.MaxNameLen {
			t.Errorf("statfs %s: namelen %d, want %d", p, st.Namelen, backend.MaxNameLen)
		}
		if st.Type != unix.FUSE_SUPER_MAGIC {
			t.Errorf("statfs %s: type %x, want FUSE's %x", p, st.Type, unix.FUSE_SUPER_MAGIC)
		}
	}
}

// TestNoXattr: there are no extended attributes; setting, getting or
// removing one fails with EOPNOTSUPP, as on a filesystem without xattr
// support, which cp -a, rsync -X and tar --xattrs take as "not supported
// here", and the list is empty.
func TestNoXattr(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	p := deliver(t, mnt, "cur", "1700000000.M1P1.host:2,S", []byte("x"))
	side := filepath.Join(mnt, "subscriptions")
	writeFile(t, side, nil)
	for _, path := range []string{p, side, filepath.Join(mnt, "cur")} {
		wantErrno(t, "setxattr "+path, unix.Setxattr(path, "user.test", []byte("v"), 0), syscall.EOPNOTSUPP)
		_, err := unix.Getxattr(path, "user.test", make([]byte, 64))
		wantErrno(t, "getxattr "+path, err, syscall.EOPNOTSUPP)
		if n, err := unix.Listxattr(path, make([]byte, 64)); err != nil || n != 0 {
			t.Errorf("listxattr %s: %d, %v; want 0, nil", path, n, err)
		}
		wantErrno(t, "removexattr "+path, unix.Removexattr(path, "user.test"), syscall.EOPNOTSUPP)
	}
}
