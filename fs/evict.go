package fs

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// DefaultMaxInodes is how many files the kernel may hold inodes of before
// some are pruned.
const DefaultMaxInodes = 100_000

// evictor bounds the memory the daemon spends on files the kernel
// remembers. go-fuse keeps a node for every inode the kernel holds, and
// the kernel holds an inode for every name it has looked up or listed
// with READDIRPLUS until memory runs short, which on a large machine is
// never: a scan of a folder of a million messages left a million nodes,
// 1.5 GB of anonymous memory. Past max file nodes, the evictor asks the
// kernel to forget some (NOTIFY_PRUNE, or an entry invalidation on
// kernels without it); the kernel sends FORGET for those no one has open,
// and go-fuse drops their nodes. A forgotten name costs one LOOKUP when
// it is used again; the index answers it.
//
// Victims are chosen at random: a scan of a folder larger than the limit
// then still finds most of what the last scan left, where evicting the
// oldest would drop exactly what the next scan needs first.
type evictor struct {
	max int
	// young nodes, the last added, are kept in the queue when they look
	// forgotten: go-fuse may not have registered them with the kernel
	// yet. They are not picked either.
	young int
	// estimate counts file nodes: exact at the last count, plus every
	// node made since (some of which go-fuse discards for an existing
	// node of the same inode number).
	estimate atomic.Int64

	mu    sync.Mutex
	queue []*node // every file node the kernel may hold, and some it does not
	kick  chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

func newEvictor(max int) *evictor {
	e := &evictor{
		max:   max,
		young: min(4096, max/16),
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go e.run()
	return e
}

// added records a new file node, which the kernel is about to hold.
func (e *evictor) added(n *node) {
	e.mu.Lock()
	e.queue = append(e.queue, n)
	e.mu.Unlock()
	if e.estimate.Add(1) > int64(e.max) {
		e.kickNow()
	}
}

func (e *evictor) kickNow() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

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
		live := e.count()
		// Down to seven eighths of the limit, so that pruning runs in
		// batches rather than once per new file.
		n := live - e.max*7/8
		if live <= e.max || n <= 0 {
			continue
		}
		victims := e.pick(n)
		e.prune(victims)
		e.mu.Lock()
		// Back in the queue: the next count drops those forgotten, and
		// keeps those the kernel could not forget (open files).
		e.queue = append(e.queue, victims...)
		e.mu.Unlock()
		e.estimate.Store(int64(live - len(victims)))
		// Files that were open are tried again in a while, even if no
		// new file comes to kick the evictor.
		time.AfterFunc(time.Second, e.kickNow)
	}
}

// count drops forgotten nodes from the queue and returns how many named
// file nodes the kernel holds.
func (e *evictor) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.queue[:0]
	live := 0
	for i, n := range e.queue {
		gone := !named(n)
		if !gone {
			live++
		}
		if !gone || i >= len(e.queue)-e.young {
			kept = append(kept, n)
		}
	}
	clear(e.queue[len(kept):])
	e.queue = kept
	e.estimate.Store(int64(live))
	return live
}

// pick takes n nodes the kernel holds off the queue, at random, leaving
// the young ones.
func (e *evictor) pick(n int) []*node {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*node
	for tries := 0; len(out) < n && len(e.queue) > e.young && tries < 4*n; tries++ {
		i := rand.IntN(len(e.queue) - e.young)
		v := e.queue[i]
		last := len(e.queue) - 1
		e.queue[i] = e.queue[last]
		e.queue[last] = nil
		e.queue = e.queue[:last]
		if named(v) {
			out = append(out, v)
		}
	}
	return out
}

// named reports whether go-fuse has n in the tree under a name: false
// for a node it forgot, and for one it discarded at registration for an
// existing node of the same inode number (OnForget tells only the first).
// An unlinked file still open has no name either; it cannot be pruned,
// and goes when it is closed.
func named(n *node) bool {
	_, parent := n.Parent()
	return parent != nil
}

// prune asks the kernel to forget nodes. It runs outside every FUSE
// request: the kernel takes directory locks to act on it, which a
// request in the same directory may hold while it waits for its answer.
func (e *evictor) prune(nodes []*node) {
	const batch = 512 // node ids per notification
	for len(nodes) > 0 {
		k := min(batch, len(nodes))
		inodes := make([]*gofs.Inode, k)
		for i, n := range nodes[:k] {
			inodes[i] = &n.Inode
		}
		if errno := inodes[0].NotifyPrune(inodes); errno == syscall.ENOSYS {
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
