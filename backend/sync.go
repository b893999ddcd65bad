package backend

import (
	"os"
	"sync"
	"time"
)

// syncer makes the journal durable. Callers of Sync ask for everything
// appended so far; one goroutine fsyncs the active container for all of
// them at once (group commit), and on a timer so that no acknowledged op
// stays volatile longer than Options.SyncInterval.
type syncer struct {
	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // highest seq someone waits for
	durable   uint64 // highest seq known fsynced
	err       error  // last fsync error, reported to its waiters
	stopped   bool
	done      chan struct{}

	// dropped are spool files to delete once their op is durable.
	dropped []droppedSpool
}

type droppedSpool struct {
	seq uint64
	ino uint64
}

func (y *syncer) start(s *Store) {
	y.cond = sync.NewCond(&y.mu)
	y.durable = s.seq
	y.done = make(chan struct{})
	go y.run(s)
	go y.tick(s)
}

func (y *syncer) stop() {
	y.mu.Lock()
	y.stopped = true
	y.cond.Broadcast()
	y.mu.Unlock()
	<-y.done
}

// markDurable records that everything up to seq is fsynced.
func (y *syncer) markDurable(seq uint64) {
	y.mu.Lock()
	if seq > y.durable {
		y.durable = seq
		y.cond.Broadcast()
	}
	y.mu.Unlock()
}

// wait blocks until seq is durable.
func (y *syncer) wait(seq uint64) error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if seq > y.requested {
		y.requested = seq
		y.cond.Broadcast()
	}
	for y.durable < seq {
		if y.stopped {
			return ErrClosed
		}
		if y.err != nil {
			return y.err
		}
		y.cond.Wait()
	}
	return nil
}

func (y *syncer) run(s *Store) {
	defer close(y.done)
	for {
		y.mu.Lock()
		for y.requested <= y.durable && !y.stopped {
			y.cond.Wait()
		}
		if y.stopped {
			y.mu.Unlock()
			return
		}
		y.err = nil
		y.mu.Unlock()

		s.mu.Lock()
		seq, f := s.seq, s.active.f
		s.mu.Unlock()
		err := fdatasync(f)
		failpoint(fpSyncBeforeAck)

		y.mu.Lock()
		if err != nil {
			s.log.Error("fsync of the journal failed", "err", err)
			y.err = err
		} else if seq > y.durable {
			y.durable = seq
		}
		y.cond.Broadcast()
		y.mu.Unlock()
		if err == nil {
			s.removeDroppedSpool(seq)
		}
	}
}

func (y *syncer) tick(s *Store) {
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-y.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		seq := s.seq
		s.mu.Unlock()
		y.mu.Lock()
		if seq > y.requested {
			y.requested = seq
			y.cond.Broadcast()
		}
		y.mu.Unlock()
	}
}

// Sync returns once every op that returned before it was called is durable.
func (s *Store) Sync() error {
	s.mu.Lock()
	seq := s.seq
	s.mu.Unlock()
	return s.sync.wait(seq)
}

// dropSpoolAfter schedules spool files for deletion once seq is durable.
func (s *Store) dropSpoolAfter(seq uint64, inos []uint64) {
	if len(inos) == 0 {
		return
	}
	s.sync.mu.Lock()
	for _, ino := range inos {
		s.sync.dropped = append(s.sync.dropped, droppedSpool{seq: seq, ino: ino})
	}
	s.sync.mu.Unlock()
}

// removeDroppedSpool deletes the scheduled spool files whose op is durable,
// unless the inode has been spooled again since.
func (s *Store) removeDroppedSpool(durable uint64) {
	s.sync.mu.Lock()
	var due []droppedSpool
	kept := s.sync.dropped[:0]
	for _, d := range s.sync.dropped {
		if d.seq <= durable {
			due = append(due, d)
		} else {
			kept = append(kept, d)
		}
	}
	s.sync.dropped = kept
	s.sync.mu.Unlock()
	if len(due) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	failpoint(fpSpoolBeforeRemove)
	for _, d := range due {
		if s.isSpooled(d.ino) {
			continue
		}
		if err := os.Remove(s.spoolPath(d.ino)); err != nil && !os.IsNotExist(err) {
			s.log.Warn("cannot remove spool file", "ino", d.ino, "err", err)
		}
		failpoint(fpSpoolAfterRemove)
	}
}

func fdatasync(f *os.File) error { return f.Sync() }
