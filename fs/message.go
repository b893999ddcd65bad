package fs

import (
	"container/list"
	"sync"

	"github.com/packdir/packdir/backend"
)

// msgCache holds the verified bytes of the sealed messages read last, by
// checksum. Files are opened without an OPEN request (see Open), so there
// is no handle to keep a message's bytes from one READ to the next: the
// kernel reads a large message in several READs, often at once, and
// without this each would read and verify the whole record again. The
// kernel keeps the pages it has read, so the cache needs to hold only the
// messages being read now.
//
// Keys are checksums, not inode numbers: the bytes a checksum names never
// change, so an entry cannot go stale when a message is changed in place,
// and messages stored once (links, copies) share one entry.
type msgCache struct {
	max int64 // bytes; the newest entry stays even if it alone is larger

	mu      sync.Mutex
	size    int64
	entries map[[32]byte]*list.Element // of *cachedMsg
	lru     list.List                  // front: used last
}

type cachedMsg struct {
	sum     [32]byte
	ready   chan struct{} // closed once the load is done
	data    []byte        // nil if the load failed
	counted bool          // data is counted in size (under mu)
}

// msgCacheBytes bounds the cache: a few large messages, or the messages
// that many readers are reading at the same time. Every byte of it costs
// about two of the daemon's memory (the garbage collector lets the heap
// grow to twice what is live), and the kernel's page cache keeps what was
// read, so it stays small: at 64 MiB it was two thirds of the live heap.
const msgCacheBytes = 16 << 20

func newMsgCache(max int64) *msgCache {
	return &msgCache{max: max, entries: map[[32]byte]*list.Element{}}
}

// get returns the bytes of the message whose checksum is sum, calling load
// (which reads the message that should have it) if they are not cached.
// Concurrent callers for one message share one load; a failed load is
// not cached, and whoever waited for it loads for themselves.
func (c *msgCache) get(sum [32]byte, load func() (*backend.Message, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[sum]; ok {
		c.lru.MoveToFront(e)
		m := e.Value.(*cachedMsg)
		c.mu.Unlock()
		<-m.ready
		if m.data != nil {
			return m.data, nil
		}
		return loadBytes(load)
	}
	m := &cachedMsg{sum: sum, ready: make(chan struct{})}
	e := c.lru.PushFront(m)
	c.entries[sum] = e
	c.mu.Unlock()

	msg, err := load()

	c.mu.Lock()
	defer c.mu.Unlock()
	// Another sum means the file was changed between its stat and the
	// load: the bytes are the file's, but not the ones sum names.
	if err == nil && msg.Sum() == sum {
		m.data = msg.Bytes()
	}
	close(m.ready)
	if c.entries[sum] == e && m.data == nil {
		c.removeLocked(e)
	} else if c.entries[sum] == e {
		m.counted = true
		c.size += int64(len(m.data))
		for c.size > c.max && c.lru.Len() > 1 {
			c.removeLocked(c.lru.Back())
		}
	}
	if err != nil {
		return nil, err
	}
	return msg.Bytes(), nil
}

func loadBytes(load func() (*backend.Message, error)) ([]byte, error) {
	msg, err := load()
	if err != nil {
		return nil, err
	}
	return msg.Bytes(), nil
}

func (c *msgCache) removeLocked(e *list.Element) {
	m := e.Value.(*cachedMsg)
	if m.counted {
		c.size -= int64(len(m.data))
	}
	delete(c.entries, m.sum)
	c.lru.Remove(e)
}
