package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// result is what one phase measured on one target.
type result struct {
	Ops       int     `json:"ops"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MBPerSec  float64 `json:"mb_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`

	lat []time.Duration
}

func (r *result) finish(elapsed time.Duration) {
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
		r.MBPerSec = float64(r.Bytes) / 1e6 / r.Seconds
	}
	if len(r.lat) == 0 {
		r.P50us = r.Seconds * 1e6 / float64(max(r.Ops, 1))
		r.P99us = r.P50us
		return
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	r.P50us = float64(r.lat[len(r.lat)/2].Nanoseconds()) / 1e3
	r.P99us = float64(r.lat[(len(r.lat)*99)/100].Nanoseconds()) / 1e3
	r.lat = nil
}

// timed runs op, adding its latency to r.
func (r *result) timed(op func() error) error {
	t0 := time.Now()
	err := op()
	r.lat = append(r.lat, time.Since(t0))
	return err
}

// workload is the state the phases share: the messages and where each
// live one is now, relative to the Maildir++ root (the same on both
// targets, since both run the same phases in the same order).
type workload struct {
	gen  *corpusGen
	live []string
	next int // index of the next message to deliver
}

// deliver writes count messages as an MDA does: create in tmp/, write,
// fsync, close, then rename (or link and unlink) into new/.
func (w *workload) deliver(who, root string, first, count, writers int, link bool, message func(int) (string, []byte)) (result, error) {
	var mu sync.Mutex
	var res result
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine result
			for i := first + g; i < first+count; i += writers {
				name, data := message(i)
				err := mine.timed(func() error { return deliverOne(root, name, data, link) })
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("%s: deliver %s: %w", who, name, err))
					mu.Unlock()
					return
				}
				mine.Ops++
				mine.Bytes += int64(len(data))
			}
			mu.Lock()
			res.Ops += mine.Ops
			res.Bytes += mine.Bytes
			res.lat = append(res.lat, mine.lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.finish(time.Since(start))
	return res, firstErr
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

func deliverOne(root, name string, data []byte, link bool) error {
	tmp := filepath.Join(root, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dst := filepath.Join(root, "new", name)
	if !link {
		return rename(tmp, dst)
	}
	if err := os.Link(tmp, dst); err != nil {
		return err
	}
	return os.Remove(tmp)
}

// rename is rename(2), as a mail program written in C calls it: Go's
// os.Rename first lstats the new name (to refuse renaming over a
// directory), a lookup that no MDA or MUA makes and that, on a FUSE
// mount, costs a round trip of its own.
func rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// scan lists new/ and cur/ of every folder and lstats every entry, as an
// MUA or IMAP server does when it opens a folder.
func scan(t *target, dirs []string) (result, error) {
	var res result
	start := time.Now()
	for _, d := range dirs {
		dir := filepath.Join(t.root, d)
		f, err := os.Open(dir)
		if err != nil {
			return res, err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return res, err
		}
		for _, n := range names {
			var st syscall.Stat_t
			if err := res.timed(func() error { return syscall.Lstat(filepath.Join(dir, n), &st) }); err != nil {
				return res, err
			}
			res.Ops++
		}
	}
	res.finish(time.Since(start))
	return res, nil
}

// readAll reads the first limit bytes (all with limit < 0) of every live
// message, one open, read and close each.
func (w *workload) readAll(t *target, limit int) (result, error) {
	var res result
	buf := make([]byte, 64<<10)
	start := time.Now()
	for _, rel := range w.live {
		var n int64
		err := res.timed(func() error {
			var err error
			n, err = readFile(filepath.Join(t.root, rel), buf, limit)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("%s: read %s: %w", t.name, rel, err)
		}
		res.Ops++
		res.Bytes += n
	}
	res.finish(time.Since(start))
	return res, nil
}

func readFile(path string, buf []byte, limit int) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if limit >= 0 {
		n, err := io.ReadFull(f, buf[:limit])
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		return int64(n), err
	}
	return io.CopyBuffer(io.Discard, f, buf)
}

// walk runs tar over the whole tree, as a backup does. Its archive goes
// through a pipe: GNU tar skips reading files when it writes to /dev/null.
func walk(t *target) (result, error) {
	var res result
	cmd := exec.Command("tar", "-cf", "-", "-C", t.root, ".")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	n, cerr := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("%s: tar: %w", t.name, err)
	}
	if cerr != nil {
		return res, cerr
	}
	res.Bytes = n
	files, err := countFiles(t.root)
	res.Ops = files
	res.finish(time.Since(start))
	return res, err
}

func countFiles(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	return n, err
}

// flag marks every message in new/ seen and then flagged, as an MUA does:
// new/x -> cur/x:2,S -> cur/x:2,FS.
func (w *workload) flag(t *target) (result, error) {
	var res result
	start := time.Now()
	for _, rel := range w.live {
		dir, base := filepath.Split(rel)
		seen := filepath.Join(filepath.Dir(filepath.Clean(dir)), "cur", base+":2,S")
		flagged := filepath.Join(filepath.Dir(filepath.Clean(dir)), "cur", base+":2,FS")
		for _, mv := range [][2]string{{rel, seen}, {seen, flagged}} {
			err := res.timed(func() error { return rename(filepath.Join(t.root, mv[0]), filepath.Join(t.root, mv[1])) })
			if err != nil {
				return res, fmt.Errorf("%s: %w", t.name, err)
			}
			res.Ops++
		}
	}
	res.finish(time.Since(start))
	return res, nil
}

// flagged is where flag leaves each message.
func flagged(live []string) []string {
	out := make([]string, len(live))
	for i, rel := range live {
		dir, base := filepath.Split(rel)
		out[i] = filepath.Join(filepath.Dir(filepath.Clean(dir)), "cur", base+":2,FS")
	}
	return out
}

// move moves every other message to .Trash/cur, as deleting in an MUA does.
func (w *workload) move(t *target) (result, error) {
	var res result
	start := time.Now()
	for i, rel := range w.live {
		if i%2 != 0 {
			continue
		}
		dst := filepath.Join(".Trash", "cur", filepath.Base(rel))
		if err := res.timed(func() error { return rename(filepath.Join(t.root, rel), filepath.Join(t.root, dst)) }); err != nil {
			return res, fmt.Errorf("%s: %w", t.name, err)
		}
		res.Ops++
	}
	res.finish(time.Since(start))
	return res, nil
}

func moved(live []string) []string {
	out := make([]string, len(live))
	for i, rel := range live {
		out[i] = rel
		if i%2 == 0 {
			out[i] = filepath.Join(".Trash", "cur", filepath.Base(rel))
		}
	}
	return out
}

// unlinkHalf unlinks every other message, as expunging does.
func (w *workload) unlinkHalf(t *target) (result, error) {
	var res result
	start := time.Now()
	for i, rel := range w.live {
		if i%4 >= 2 {
			continue
		}
		if err := res.timed(func() error { return os.Remove(filepath.Join(t.root, rel)) }); err != nil {
			return res, fmt.Errorf("%s: %w", t.name, err)
		}
		res.Ops++
	}
	res.finish(time.Since(start))
	return res, nil
}

func unlinked(live []string) []string {
	var out []string
	for i, rel := range live {
		if i%4 >= 2 {
			out = append(out, rel)
		}
	}
	return out
}

// space is what a target's data occupies on the backing disk.
type space struct {
	Blocks512 int64 `json:"blocks_512"`
	Bytes     int64 `json:"bytes"`
	Inodes    int   `json:"inodes"`
}

func measureSpace(dir string) (space, error) {
	var sp space
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		sp.Blocks512 += st.Blocks
		sp.Bytes += st.Size
		sp.Inodes++
		return nil
	})
	return sp, err
}
