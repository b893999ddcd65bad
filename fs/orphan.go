package fs

import (
	"errors"
	"sync"

	"github.com/packdir/packdir/backend"
)

// A file unlinked (or renamed over) while a process has it open must stay
// usable through its descriptor until it is closed, as on a local
// filesystem: Dovecot expunges a message that mutt is showing, a program
// unlinks the temporary file it still writes, Dovecot renames a new
// dovecot-uidlist over the one another process has open. Files have no
// handles (see node_open.go), so the daemon cannot tell an open file from
// a closed one; it knows only that the kernel still holds the inode, until
// FORGET. So before an op that may drop an inode the kernel holds, the
// inode is held (backend.Store.Hold: a spooled file keeps its spool file
// and attributes, and Getattr, Setattr and OpenSpool keep serving it) and
// a sealed one's payload is pinned (backend.Store.Pin: compaction keeps
// it, and Read serves it from its payload); FORGET lets both go.

// pin is what is kept of a node before an op that may drop its inode.
type pin struct {
	n    *node
	lock *sync.Mutex
	sum  [32]byte
	// sealed is whether the payload sum is pinned too.
	sealed bool
}

// pinChild holds the file called name in this directory, and pins its
// payload if it is sealed, if the kernel holds its inode; nil otherwise.
// Until settle it holds the file's lock, so that no write or commit
// changes the file from spooled to sealed or back before the op.
func (n *node) pinChild(name string) *pin {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	c, ok := ch.Operations().(*node)
	if !ok {
		return nil
	}
	l := n.fsys.fileLock(c.ino)
	l.Lock()
	a, err := c.attr()
	if err != nil || a.Mode&backend.ModeType != backend.ModeRegular {
		l.Unlock()
		return nil
	}
	p := &pin{n: c, lock: l, sum: a.Payload, sealed: a.Sealed}
	n.store().Hold(c.ino)
	if p.sealed {
		n.store().Pin(a.Payload)
	}
	c.mu.Lock()
	c.holds++
	if p.sealed {
		c.pins = append(c.pins, a.Payload)
	}
	c.mu.Unlock()
	return p
}

// settle lets the file's lock go, and drops the hold and the pin again
// unless the op dropped the inode: the inode lives on under another name,
// or the op failed.
func (p *pin) settle() {
	if p == nil {
		return
	}
	defer p.lock.Unlock()
	a, err := p.n.store().Getattr(p.n.ino)
	if errors.Is(err, backend.ErrNotFound) || err == nil && a.Nlink == 0 {
		return // unlinked: kept until the kernel forgets the inode
	}
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	p.n.holds--
	p.n.store().Release(p.n.ino)
	if !p.sealed {
		return
	}
	for i, sum := range p.n.pins {
		if sum == p.sum {
			p.n.pins = append(p.n.pins[:i], p.n.pins[i+1:]...)
			p.n.store().Unpin(sum)
			return
		}
	}
}

// OnForget: the kernel holds the inode no more, so no reader or writer is
// left.
func (n *node) OnForget() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sum := range n.pins {
		n.store().Unpin(sum)
	}
	n.pins = nil
	for ; n.holds > 0; n.holds-- {
		n.store().Release(n.ino)
	}
}
