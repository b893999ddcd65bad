package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/packdir/packdir/backend"
	"github.com/packdir/packdir/maildir"
)

// folderStats is one Maildir++ folder as a mail client sees it: what
// `packdir stats` reports per folder, read from the message names alone
// (the index holds them; no container is read).
type folderStats struct {
	User     string `json:"user"`
	Folder   string `json:"folder"` // "INBOX", or the folder's directory name (".Trash")
	Messages int    `json:"messages"`
	Unseen   int    `json:"unseen"` // in new/, or in cur/ without the S flag
	Flagged  int    `json:"flagged"`
	Trashed  int    `json:"trashed"` // T flag: marked for deletion
	BadNames int    `json:"bad_names,omitempty"`
}

// readDirBatch is how many entries one ReadDir call returns.
const readDirBatch = 4096

// allFolderStats counts the messages of every folder of every user.
func allFolderStats(s *backend.Store) ([]folderStats, error) {
	users, err := s.Users()
	if err != nil {
		return nil, err
	}
	var out []folderStats
	for _, u := range users {
		if out, err = walkFolders(s, u.Name, u.Ino, "INBOX", out); err != nil {
			return nil, fmt.Errorf("user %s: %w", u.Name, err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return folderKey(out[i]) < folderKey(out[j]) })
	return out, nil
}

// folderKey orders folders by user (users come sorted), INBOX first.
func folderKey(f folderStats) string {
	if f.Folder == "INBOX" {
		return f.User + "\x00"
	}
	return f.User + "\x00/" + f.Folder
}

// walkFolders appends the stats of the folder in directory dir, if it is
// one (it has a cur/), and of the folders below it.
func walkFolders(s *backend.Store, user string, dir uint64, name string, out []folderStats) ([]folderStats, error) {
	subdirs, err := listDirs(s, dir)
	if err != nil {
		return out, err
	}
	if _, ok := subdirs["cur"]; ok {
		f := folderStats{User: user, Folder: name}
		if err := f.count(s, subdirs["new"], true); err != nil {
			return out, err
		}
		if err := f.count(s, subdirs["cur"], false); err != nil {
			return out, err
		}
		out = append(out, f)
	}
	for sub, ino := range subdirs {
		if sub == "new" || sub == "cur" || sub == "tmp" {
			continue
		}
		if out, err = walkFolders(s, user, ino, sub, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// listDirs returns the subdirectories of dir by name.
func listDirs(s *backend.Store, dir uint64) (map[string]uint64, error) {
	dirs := map[string]uint64{}
	err := eachEntry(s, dir, func(e backend.Dirent) {
		if e.Mode&backend.ModeType == backend.ModeDir {
			dirs[e.Name] = e.Ino
		}
	})
	return dirs, err
}

// count adds the messages of a new/ (isNew) or cur/ directory; dir 0
// means the folder has none.
func (f *folderStats) count(s *backend.Store, dir uint64, isNew bool) error {
	if dir == 0 {
		return nil
	}
	return eachEntry(s, dir, func(e backend.Dirent) {
		if e.Mode&backend.ModeType != backend.ModeRegular {
			return
		}
		n, err := maildir.Parse(e.Name)
		if err != nil {
			f.BadNames++
		}
		f.Messages++
		if isNew || !n.Seen() {
			f.Unseen++
		}
		if n.Flagged() {
			f.Flagged++
		}
		if n.Trashed() {
			f.Trashed++
		}
	})
}

// eachEntry calls fn for every entry of directory dir, in the index's
// order (by cookie), a batch at a time.
func eachEntry(s *backend.Store, dir uint64, fn func(backend.Dirent)) error {
	var after backend.DirPos
	for {
		ents, err := s.ReadDir(dir, after, readDirBatch)
		if err != nil {
			return err
		}
		for _, e := range ents {
			fn(e)
		}
		if len(ents) < readDirBatch {
			return nil
		}
		after = ents[len(ents)-1].Pos()
	}
}

// printFolderStats writes the per-folder table of `packdir stats`.
func printFolderStats(w io.Writer, folders []folderStats) {
	fmt.Fprintln(w, "USER\tFOLDER\tMESSAGES\tUNSEEN\tFLAGGED\tTRASHED")
	for _, f := range folders {
		bad := ""
		if f.BadNames > 0 {
			bad = fmt.Sprintf("\t(%d names not Maildir)", f.BadNames)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d%s\n", displayName(f.User), displayName(f.Folder), f.Messages, f.Unseen, f.Flagged, f.Trashed, bad)
	}
}
