package fs

import (
	"errors"

	"github.com/packdir/packdir/backend"
)

// A file unlinked (or renamed over) while a reader has it open must stay
// readable until it is closed, as on a local filesystem: Dovecot expunges
// a message that mutt is showing. Files have no handles (see
// node_open.go), so the daemon cannot tell an open file from a closed one;
// it knows only that the kernel still holds the inode, until FORGET. So
// before an op that may drop an inode the kernel holds, the inode's
// payload is pinned (backend.Store.Pin: compaction keeps it), Read serves
// an inode gone from the index from its payload, and FORGET unpins.

// pin is a payload pinned for a node before an op that may drop its inode.
type pin struct {
	n   *node
	sum [32]byte
}

// pinChild pins the payload of the sealed file called name in this
// directory, if the kernel holds its inode; nil otherwise.
func (n *node) pinChild(name string) *pin {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	c, ok := ch.Operations().(*node)
	if !ok {
		return nil
	}
	a, err := c.attr()
	if err != nil || !a.Sealed || a.Mode&backend.ModeType != backend.ModeRegular {
		return nil
	}
	n.store().Pin(a.Payload)
	c.mu.Lock()
	c.pins = append(c.pins, a.Payload)
	c.mu.Unlock()
	return &pin{n: c, sum: a.Payload}
}

// settle drops the pin again unless the op dropped the inode: the inode
// lives on under another name, or the op failed.
func (p *pin) settle() {
	if p == nil {
		return
	}
	if _, err := p.n.store().Getattr(p.n.ino); errors.Is(err, backend.ErrNotFound) {
		return // unlinked: pinned until the kernel forgets the inode
	}
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	for i, sum := range p.n.pins {
		if sum == p.sum {
			p.n.pins = append(p.n.pins[:i], p.n.pins[i+1:]...)
			p.n.store().Unpin(sum)
			return
		}
	}
}

// OnForget: the kernel holds the inode no more, so no reader is left.
func (n *node) OnForget() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sum := range n.pins {
		n.store().Unpin(sum)
	}
	n.pins = nil
}
