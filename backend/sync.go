package backend

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// syncer makes the journal durable by group commit. A caller of Sync
// that finds no fsync running runs one itself, for everything appended so
// far (it leads); callers that arrive meanwhile wait for it and, if their
// ops came after what it covered, one of them leads the next. So one
// delivery pays one fsync and no hand-off to another goroutine, and many
// concurrent deliveries share each fsync. A timer makes sure no
// acknowledged op stays volatile longer than Options.SyncInterval.
type syncer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	syncing bool   // a leader is in fdatasync
	waiting int    // followers waiting for the leader
	durable uint64 // highest seq known fsynced
	// err is sticky: after a failed fsync the kernel may have dropped the
	// journal's dirty pages and report the next fsync as a success, so no
	// later op is acknowledged as durable until the store is reopened and
	// recovery has read back what the container really holds.
	err     error
	stopped bool
	done    chan struct{} // closed when background ends
	quit    chan struct{}
	reap    chan struct{} // wakes background: spool files may be due

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
	y.quit = make(chan struct{})
	y.reap = make(chan struct{}, 1)
	go y.background(s)
}

// stop ends background and waits for a running fsync; later waits
// return ErrClosed.
func (y *syncer) stop() {
	close(y.quit)
	<-y.done
	y.mu.Lock()
	y.stopped = true
	for y.syncing {
		y.cond.Wait()
	}
	y.cond.Broadcast()
	y.mu.Unlock()
}

// markDurable records that everything up to seq is fsynced.
func (y *syncer) markDurable(seq uint64) {
	y.mu.Lock()
	y.advanceLocked(seq)
	y.mu.Unlock()
}

// advanceLocked raises durable to seq, wakes the waiters, and then wakes
// background to remove the spool files now due; the caller holds y.mu.
// The order matters: background reads durable once it wakes, and woken
// before durable was raised it could read the old value, find nothing
// due and sleep until the next fsync, which after the last delivery of a
// burst never comes: the delivered message kept its spool file.
func (y *syncer) advanceLocked(seq uint64) {
	if seq <= y.durable {
		return
	}
	y.durable = seq
	y.cond.Broadcast()
	y.wakeReaperLocked()
}

// wakeReaperLocked makes background run removeDroppedSpool soon; one
// pending wake-up covers any number of calls. The caller holds y.mu.
func (y *syncer) wakeReaperLocked() {
	select {
	case y.reap <- struct{}{}:
	default:
	}
}

// wait blocks until seq is durable, leading an fsync when none is running.
func (y *syncer) wait(s *Store, seq uint64) error {
	y.mu.Lock()
	defer y.mu.Unlock()
	for y.durable < seq {
		switch {
		case y.err != nil:
			return y.err
		case y.stopped:
			return ErrClosed
		case y.syncing:
			y.waiting++
			y.cond.Wait()
			y.waiting--
		default:
			y.lead(s)
		}
	}
	return nil
}

// lead runs one fsync of the active container for every op appended so
// far. It is called with y.mu held and returns with it held.
func (y *syncer) lead(s *Store) {
	y.syncing = true
	y.mu.Unlock()

	s.mu.Lock()
	seq, num, f := s.seq, s.active.num, s.active.f
	s.mu.Unlock()
	err := fdatasync(f)
	if err == nil {
		err = stillLinked(f, s.files.path(num))
	}
	failpoint(fpSyncBeforeAck)

	y.mu.Lock()
	y.syncing = false
	if err != nil {
		s.log.Error("fsync of the journal failed; no change is acknowledged as durable until the store is mounted again", "container", num, "err", err)
		y.err = fmt.Errorf("backend: fsync of the journal: %w", err)
	} else {
		y.advanceLocked(seq)
	}
	y.cond.Broadcast()
}

// background fsyncs on a timer, so that no acknowledged op stays
// volatile longer than Options.SyncInterval, and deletes spool files once
// the ops that dropped them are durable, off the path of the fsync's
// waiters.
func (y *syncer) background(s *Store) {
	defer close(y.done)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-y.quit:
			return
		case <-t.C:
			s.mu.Lock()
			seq := s.seq
			s.mu.Unlock()
			// An error is reported to the ops that wait; the timer
			// only keeps trying to lead.
			_ = y.wait(s, seq)
		case <-y.reap:
			y.mu.Lock()
			durable := y.durable
			y.mu.Unlock()
			s.removeDroppedSpool(durable)
		}
	}
}

// Sync returns once every op that returned before it was called is durable.
func (s *Store) Sync() error {
	s.mu.Lock()
	seq := s.seq
	s.mu.Unlock()
	return s.sync.wait(s, seq)
}

// dropSpoolAfter schedules spool files for deletion once seq is durable.
// If it already is (Release of an orphan whose op an fsync covered since
// it looked), no later fsync may come to wake background, so it is woken
// now.
func (s *Store) dropSpoolAfter(seq uint64, inos []uint64) {
	if len(inos) == 0 {
		return
	}
	s.sync.mu.Lock()
	for _, ino := range inos {
		s.sync.dropped = append(s.sync.dropped, droppedSpool{seq: seq, ino: ino})
	}
	if seq <= s.sync.durable {
		s.sync.wakeReaperLocked()
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
		if s.isSpooled(d.ino) || s.isOrphan(d.ino) {
			continue
		}
		if err := os.Remove(s.spoolPath(d.ino)); err != nil && !os.IsNotExist(err) {
			s.log.Warn("cannot remove spool file", "ino", d.ino, "err", err)
		}
		failpoint(fpSpoolAfterRemove)
	}
}

// fdatasync makes a container's appended records durable; a variable so
// that tests can count and fail fsyncs.
var fdatasync = func(f *os.File) error { return f.Sync() }
