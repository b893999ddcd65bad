package fs

import (
	"sync"
	"syscall"

	"github.com/packdir/packdir/backend"
)

// quotaErrno is EDQUOT for a write to a file in tmp/ once the file's
// owner is over quota, as a filesystem with disk quotas fails the write
// that needs a block the owner does not have. Side files (Dovecot's index,
// uidlist) stay writable, so that a user over quota can still read and
// delete mail; the commit into new/ or cur/ is where the quota bites.
func (n *node) quotaErrno() syscall.Errno {
	name, parent := n.Parent()
	if parent == nil || name == "" {
		return 0
	}
	p, ok := parent.Operations().(*node)
	if !ok {
		return 0
	}
	if dirName, _ := p.Parent(); dirName != "tmp" {
		return 0
	}
	if n.store().OverQuota(n.ino) {
		return syscall.EDQUOT
	}
	return 0
}

// inPlace counts, per owner, the files written in place in new/ or cur/
// whose seal is still to come, at the size each was last admitted at:
// the quota holds them as used, as if sealed, so that files written side
// by side cannot pass it together where each alone would not. A file
// leaves the count when its seal is tried, whatever the outcome: once
// sealed its owner's usage holds it, and one whose seal failed is listed
// by stats and fsck (and counted again if it is written again).
type inPlace struct {
	mu    sync.Mutex
	files map[uint64]inPlaceFile // by inode
	byUID map[uint32]backend.Usage
}

type inPlaceFile struct {
	uid  uint32
	size uint64
}

// admit checks that file ino, which uid owns, may grow to size bytes in
// new/ or cur/, and counts it at that size if so.
func (p *inPlace) admit(s *backend.Store, ino uint64, uid uint32, size uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.files[ino]
	if had {
		p.countLocked(old, -1)
	}
	if err := s.AdmitMessage(uid, size, p.byUID[uid]); err != nil {
		if had {
			p.countLocked(old, 1)
		}
		return err
	}
	if p.files == nil {
		p.files, p.byUID = map[uint64]inPlaceFile{}, map[uint32]backend.Usage{}
	}
	p.files[ino] = inPlaceFile{uid: uid, size: size}
	p.countLocked(p.files[ino], 1)
	return nil
}

// check checks that one more message of size bytes that uid owns could
// be sealed beside those counted, and counts nothing.
func (p *inPlace) check(s *backend.Store, uid uint32, size uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.AdmitMessage(uid, size, p.byUID[uid])
}

// admitAll checks that files, all spooled, could be sealed together
// beside those counted; it counts none of them.
func (p *inPlace) admitAll(s *backend.Store, files []backend.Attr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := map[uint32]backend.Usage{}
	for _, a := range files {
		u, ok := pending[a.UID]
		if !ok {
			u = p.byUID[a.UID]
		}
		if err := s.AdmitMessage(a.UID, a.Size, u); err != nil {
			return err
		}
		pending[a.UID] = backend.Usage{Bytes: u.Bytes + a.Size, Messages: u.Messages + 1}
	}
	return nil
}

// done stops counting file ino: its seal was tried.
func (p *inPlace) done(ino uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.files[ino]; ok {
		p.countLocked(f, -1)
		delete(p.files, ino)
	}
}

func (p *inPlace) countLocked(f inPlaceFile, sign int) {
	u := p.byUID[f.uid]
	if sign > 0 {
		u.Bytes += f.size
		u.Messages++
	} else {
		u.Bytes -= f.size
		u.Messages--
	}
	if u == (backend.Usage{}) {
		delete(p.byUID, f.uid)
		return
	}
	p.byUID[f.uid] = u
}
