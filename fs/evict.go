package fs

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// DefaultMaxInodes is how many files the kernel may hold inodes of before
// the oldest are pruned.
const DefaultMaxInodes = 100_000

// evictor bounds the memory the daemon spends on files the kernel
// remembers. go-fuse keeps a node for every inode the kernel holds, and
// the kernel holds an inode for every name it has looked up or listed
// with READDIRPLUS until memory runs short, which on a large machine is
// never: a scan of a folder of a million messages left a million nodes,
// 1.5 GB of anonymous memory. Past max nodes, the evictor asks the kernel to forget
// the oldest files (NOTIFY_PRUNE, or an entry invalidation on kernels
// without it); the kernel sends FORGET for those no one has open, and
// go-fuse drops their nodes. A forgotten name costs one LOOKUP when it is
// used again; the index answers it.
type evictor struct {
	max  int64
	live atomic.Int64 // file nodes go-fuse holds for the kernel

	mu    sync.Mutex
	queue []*node // file nodes, oldest first; some already forgotten
	kick  chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

func newEvictor(max int) *evictor {
	e := &evictor{
		max:  int64(max),
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go e.run()
	return e
}

// added records a new file node that the kernel now holds.
func (e *evictor) added(n *node) {
	live := e.live.Add(1)
	e.mu.Lock()
	e.queue = append(e.queue, n)
	// Nodes forgotten without eviction (unlinked messages) stay queued
	// until popped; drop them when they are most of the queue.
	if len(e.queue) > 1024 && int64(len(e.queue)) > 2*live {
		kept := e.queue[:0]
		for _, q := range e.queue {
			if !q.forgotten.Load() {
				kept = append(kept, q)
			}
		}
		clear(e.queue[len(kept):])
		e.queue = kept
	}
	e.mu.Unlock()
	if live > e.max {
		e.kickIfOver()
	}
}

// kickIfOver wakes the evictor if there are more file nodes than allowed.
func (e *evictor) kickIfOver() {
	if e.live.Load() <= e.max {
		return
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// forgotten records that go-fuse dropped a file node.
func (e *evictor) forgotten() { e.live.Add(-1) }

func (e *evictor) stop() {
	close(e.quit)
	<-e.done
}

func (e *evictor) run() {
	defer close(e.done)
	for {
		select {
		case <-e.quit:
			return
		case <-e.kick:
		}
		// Down to seven eighths of the limit, so that pruning runs in
		// batches rather than once per new file.
		if n := e.live.Load() - e.max*7/8; n > 0 {
			nodes := e.oldest(int(n))
			e.prune(nodes)
			e.requeue(nodes)
			// Files that were open are tried again in a while, even
			// if no new file comes to kick the evictor.
			time.AfterFunc(time.Second, e.kickIfOver)
		}
	}
}

// oldest takes up to n nodes the kernel still holds off the queue.
func (e *evictor) oldest(n int) []*node {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*node
	i := 0
	for ; i < len(e.queue) && len(out) < n; i++ {
		if !e.queue[i].forgotten.Load() {
			out = append(out, e.queue[i])
		}
	}
	clear(e.queue[:i])
	e.queue = e.queue[i:]
	return out
}

// requeue puts pruned nodes back at the end of the queue. The kernel
// cannot forget a file that is open, or one whose LOOKUP answer it has
// not yet read; those are pruned again later. The rest are forgotten
// by then, and skipped.
func (e *evictor) requeue(nodes []*node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range nodes {
		if !n.forgotten.Load() {
			e.queue = append(e.queue, n)
		}
	}
}

// prune asks the kernel to forget nodes. It runs outside every FUSE
// request: the kernel takes directory locks to act on it, which a
// request in the same directory may hold while it waits for its answer.
func (e *evictor) prune(nodes []*node) {
	if len(nodes) == 0 {
		return
	}
	const batch = 512 // node ids per notification
	root := &nodes[0].Inode
	for len(nodes) > 0 {
		k := min(batch, len(nodes))
		inodes := make([]*gofs.Inode, k)
		for i, n := range nodes[:k] {
			inodes[i] = &n.Inode
		}
		if errno := root.NotifyPrune(inodes); errno == syscall.ENOSYS {
			invalidate(nodes)
			return
		}
		nodes = nodes[k:]
	}
}

// invalidate drops the kernel's names of nodes one by one, for kernels
// without NOTIFY_PRUNE: an inode no name refers to is forgotten.
func invalidate(nodes []*node) {
	for _, n := range nodes {
		if name, parent := n.Parent(); parent != nil {
			parent.NotifyEntry(name)
		}
	}
}
