package fs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestErrno: failures give the errno a local filesystem gives, which is
// what mail programs test for. Contract: "Errors are errno values a mail
// program understands".
func TestErrno(t *testing.T) {
	t.Parallel()
	mnt, _ := mountT(t)
	p := func(parts ...string) string { return filepath.Join(append([]string{mnt}, parts...)...) }
	msg := deliver(t, mnt, "cur", "1700000000.M1P1.host:2,S", []byte("message"))
	long := strings.Repeat("x", 256)
	openErr := func(path string, flags int) error {
		fd, err := unix.Open(path, flags, 0o600)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"open missing", openErr(p("cur", "missing"), unix.O_RDONLY), syscall.ENOENT},
		{"open in missing dir", openErr(p(".Nope", "cur", "x"), unix.O_RDWR|unix.O_CREAT), syscall.ENOENT},
		{"unlink missing", unix.Unlink(p("cur", "missing")), syscall.ENOENT},
		{"rename missing", unix.Rename(p("new", "missing"), p("cur", "missing:2,S")), syscall.ENOENT},
		{"rmdir missing", unix.Rmdir(p(".Nope")), syscall.ENOENT},
		{"link missing", unix.Link(p("tmp", "missing"), p("new", "x")), syscall.ENOENT},
		{"mkdir existing", unix.Mkdir(p("cur"), 0o700), syscall.EEXIST},
		{"mkdir over a file", unix.Mkdir(msg, 0o700), syscall.EEXIST},
		{"link onto existing", unix.Link(msg, p("cur")), syscall.EEXIST},
		{"link onto existing file", unix.Link(msg, msg), syscall.EEXIST},
		{"O_EXCL on existing", openErr(msg, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL), syscall.EEXIST},
		{"rmdir non-empty", unix.Rmdir(p(".Trash")), syscall.ENOTEMPTY},
		{"rmdir non-empty cur", unix.Rmdir(p("cur")), syscall.ENOTEMPTY},
		{"stat 256-byte name", unix.Lstat(p("cur", long), new(unix.Stat_t)), syscall.ENAMETOOLONG},
		{"create 256-byte name", openErr(p("tmp", long), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL), syscall.ENAMETOOLONG},
		{"mkdir 256-byte name", unix.Mkdir(p(long), 0o700), syscall.ENAMETOOLONG},
		{"rename to 256-byte name", unix.Rename(msg, p("cur", long)), syscall.ENAMETOOLONG},
		{"link to 256-byte name", unix.Link(msg, p("cur", long)), syscall.ENAMETOOLONG},
		{"symlink with 256-byte name", unix.Symlink("cur", p(long)), syscall.ENAMETOOLONG},
		{"open dir O_WRONLY", openErr(p("cur"), unix.O_WRONLY), syscall.EISDIR},
		{"open dir O_RDWR", openErr(p("cur"), unix.O_RDWR), syscall.EISDIR},
		{"unlink a dir", unix.Unlink(p("cur")), syscall.EISDIR},
		{"rename file onto dir", unix.Rename(msg, p(".Trash")), syscall.EISDIR},
		{"rmdir a file", unix.Rmdir(msg), syscall.ENOTDIR},
		{"rename dir onto file", unix.Rename(p(".Draft"), msg), syscall.ENOTDIR},
		{"open under a file", openErr(filepath.Join(msg, "x"), unix.O_RDONLY), syscall.ENOTDIR},
		{"mkdir under a file", unix.Mkdir(filepath.Join(msg, "x"), 0o700), syscall.ENOTDIR},
		{"rename dir into itself", unix.Rename(p(".Trash"), p(".Trash", "cur", "x")), syscall.EINVAL},
		{"link a dir", unix.Link(p("cur"), p("cur2")), syscall.EPERM},
	}
	for _, c := range cases {
		wantErrno(t, c.name, c.err, c.want)
	}

	// Nothing above changed the tree.
	want := []string{".Draft", ".Outbox", ".Trash", "cur", "new", "tmp"}
	if got := names(t, mnt); !equalStrings(got, want) {
		t.Errorf("root holds %q, want %q", got, want)
	}
	if got := names(t, p("cur")); !equalStrings(got, []string{"1700000000.M1P1.host:2,S"}) {
		t.Errorf("cur holds %q", got)
	}
	checkContent(t, msg, []byte("message"))

	// 255 bytes is the longest name, for every kind of entry.
	max := strings.Repeat("y", 255)
	writeFile(t, p("tmp", max), []byte("long name"))
	must(t, os.Rename(p("tmp", max), p("new", max)))
	checkContent(t, p("new", max), []byte("long name"))
	must(t, os.Link(p("new", max), p("cur", max)))
	must(t, os.Mkdir(p(max), 0o700))
	must(t, os.Symlink(max, p(max[:254]+"z")))
	if target, err := os.Readlink(p(max[:254] + "z")); err != nil || target != max {
		t.Errorf("readlink: %q, %v", target, err)
	}
	if got := names(t, p("cur")); len(got) != 2 {
		t.Errorf("cur holds %d names, want 2", len(got))
	}
}
