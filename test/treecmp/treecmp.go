// Package treecmp records what a backup must carry over from a directory
// tree, and compares two such records: the integration tests back up a
// Maildir++ tree on a packdir mount, restore it, and require the restored
// tree to be the same.
//
// Glossary: a Tree is the record of one directory tree, keyed by path
// relative to its root ("." is the root itself); an Entry is what is
// compared of one name; the link group of a file is the set of names in
// the tree that are hard links of the same inode.
//
// What is compared, and why:
//
//   - type and permission bits (with setuid, setgid, sticky), owner and
//     group: every tool under test restores them when run as root;
//   - st_nlink of every entry: 2 + subdirectories for a directory, the
//     number of names for a file (a hard link lost or added shows here);
//   - size and SHA-256 of regular files, the target of symlinks;
//   - the link group of every regular file: restored hard links must join
//     the same names, whatever inode numbers they get;
//   - mtime, to the resolution the tool keeps (Options.MtimeResolution),
//     for files and directories.
//
// Not compared: the size of directories (a property of the filesystem, not
// of the tree), atime (reading for the backup changes it) and ctime (no
// tool can set it), inode numbers themselves, and extended attributes
// (packdir keeps none).
package treecmp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Entry is what is compared of one name in a tree.
type Entry struct {
	Type     fs.FileMode // fs.ModeDir, fs.ModeSymlink, ..., 0 for a regular file
	Perm     fs.FileMode // permission bits with fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky
	UID, GID uint32
	Nlink    uint64
	Size     int64  // regular files and symlinks only
	SHA256   string // regular files only
	Target   string // symlinks only
	Mtime    time.Time
	Links    string // regular files with st_nlink > 1: the names of the inode in the tree, sorted, joined by " + "
}

// Tree is the record of a directory tree, keyed by slash-separated path
// relative to its root; the root itself is ".".
type Tree map[string]Entry

// Scan records the tree below root. It reads every regular file.
func Scan(root string) (Tree, error) {
	tree := make(Tree)
	inodes := make(map[fileID][]string) // names of each inode with st_nlink > 1
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		e, id, err := scanEntry(path)
		if err != nil {
			return err
		}
		if e.Type == 0 && e.Nlink > 1 {
			inodes[id] = append(inodes[id], rel)
		}
		tree[rel] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("treecmp: %w", err)
	}
	for _, names := range inodes {
		sort.Strings(names)
		group := strings.Join(names, " + ")
		for _, name := range names {
			e := tree[name]
			e.Links = group
			tree[name] = e
		}
	}
	return tree, nil
}

// fileID identifies an inode.
type fileID struct{ dev, ino uint64 }

func scanEntry(path string) (Entry, fileID, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Entry{}, fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Entry{}, fileID{}, fmt.Errorf("%s: no stat_t", path)
	}
	e := Entry{
		Type:  fi.Mode().Type(),
		Perm:  fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
		UID:   st.Uid,
		GID:   st.Gid,
		Nlink: uint64(st.Nlink),
		Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
	}
	switch {
	case fi.Mode().IsRegular():
		e.Size = fi.Size()
		e.SHA256, err = fileSHA256(path)
	case e.Type == fs.ModeSymlink:
		e.Size = fi.Size()
		e.Target, err = os.Readlink(path)
	}
	return e, fileID{dev: uint64(st.Dev), ino: st.Ino}, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Options says what a tool is known to keep.
type Options struct {
	// MtimeResolution is the precision of the mtimes the tool restores: a
	// restored mtime must equal the original truncated to it (GNU tar's
	// default format keeps whole seconds, and restores .0). Zero means
	// exact to the nanosecond.
	MtimeResolution time.Duration
	// IgnoreMtime names paths whose mtime the tool does not restore (the
	// root of a restic snapshot of ".", whose metadata restic keeps
	// nowhere).
	IgnoreMtime []string
}

// Diff compares the restored tree got with the original want and returns
// one line per difference, sorted: "PATH: missing", "PATH: extra", or
// "PATH: FIELD want W, got G". No lines means the trees are the same.
func Diff(want, got Tree, opt Options) []string {
	var diffs []string
	for path, w := range want {
		g, ok := got[path]
		if !ok {
			diffs = append(diffs, path+": missing")
			continue
		}
		for _, d := range diffEntry(w, g, opt, ignored(opt.IgnoreMtime, path)) {
			diffs = append(diffs, path+": "+d)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			diffs = append(diffs, path+": extra")
		}
	}
	sort.Strings(diffs)
	return diffs
}

func ignored(paths []string, path string) bool {
	for _, p := range paths {
		if p == path {
			return true
		}
	}
	return false
}

// diffEntry compares one name. Content and link group are compared only
// when the types agree, as they mean nothing otherwise.
func diffEntry(w, g Entry, opt Options, ignoreMtime bool) []string {
	var d []string
	field := func(name string, want, got any) {
		if want != got {
			d = append(d, fmt.Sprintf("%s want %v, got %v", name, want, got))
		}
	}
	field("type", typeName(w.Type), typeName(g.Type))
	field("perm", w.Perm, g.Perm)
	field("uid", w.UID, g.UID)
	field("gid", w.GID, g.GID)
	field("nlink", w.Nlink, g.Nlink)
	if w.Type == g.Type {
		field("size", w.Size, g.Size)
		field("sha256", w.SHA256, g.SHA256)
		field("symlink target", w.Target, g.Target)
		field("hard links", w.Links, g.Links)
	}
	if !ignoreMtime {
		field("mtime", formatTime(truncate(w.Mtime, opt.MtimeResolution)), formatTime(g.Mtime))
	}
	return d
}

// truncate rounds t down to a multiple of res since the epoch, as a tool
// that stores whole units does (time.Time.Truncate counts from year 1).
func truncate(t time.Time, res time.Duration) time.Time {
	if res <= 1 {
		return t
	}
	ns, r := t.UnixNano(), int64(res)
	rem := ns % r
	if rem < 0 {
		rem += r
	}
	return time.Unix(0, ns-rem)
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

func typeName(t fs.FileMode) string {
	switch t {
	case 0:
		return "file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symlink"
	}
	return t.String()
}
