package main

import (
	"fmt"
	"os"
)

// messageDirs are the directories the scan phases list.
var messageDirs = []string{"new", "cur", ".Trash/new", ".Trash/cur"}

// phase is one step of the workload. Each runs on both targets, native
// first in even phases and packdir first in odd ones, so that neither
// always runs on a disk the other has just made busy. after updates the
// workload once both have run.
type phase struct {
	name  string
	cold  bool
	run   func(t *target) (result, error)
	after func()
}

func (b *bench) phases() []phase {
	w, n := b.w, b.cfg.Messages
	half := n / 2
	var ps []phase
	deliver := func(name string, count, writers int, link bool) phase {
		first := 0
		return phase{name: name,
			run: func(t *target) (result, error) {
				first = w.next
				return w.deliver(t.name, t.root, first, count, writers, link, w.gen.message)
			},
			after: func() {
				for i := first; i < first+count; i++ {
					name, _ := w.gen.message(i)
					w.live = append(w.live, "new/"+name)
				}
				w.next = first + count
			}}
	}
	ps = append(ps,
		deliver("deliver-1", half, 1, false),
		deliver(fmt.Sprintf("deliver-%d", b.cfg.Writers), half, b.cfg.Writers, false),
		deliver("deliver-link", n/4, 1, true),
	)
	scanPhase := func(name string, cold bool) phase {
		return phase{name: name, cold: cold, run: func(t *target) (result, error) { return scan(t, messageDirs) }}
	}
	read := func(name string, limit int, cold bool) phase {
		return phase{name: name, cold: cold, run: func(t *target) (result, error) { return w.readAll(t, limit) }}
	}
	if b.cfg.Cold {
		ps = append(ps,
			scanPhase("scan-cold", true),
			read("headers-cold", 4096, true),
			read("read-cold", -1, true),
			phase{name: "walk-cold", cold: true, run: walk},
		)
	} else {
		// Warm phases read what the cold ones would have loaded.
		ps = append(ps, phase{name: "warm-up", run: func(t *target) (result, error) { return w.readAll(t, -1) }})
	}
	ps = append(ps,
		scanPhase("scan-warm", false),
		read("headers-warm", 4096, false),
		read("read-warm", -1, false),
		phase{name: "walk-warm", run: walk},
		phase{name: "flag", run: w.flag, after: func() { w.live = flagged(w.live) }},
		phase{name: "move", run: w.move, after: func() { w.live = moved(w.live) }},
		phase{name: "unlink", run: w.unlinkHalf, after: func() { w.live = unlinked(w.live) }},
	)
	return ps
}

func (b *bench) run(work string) (*report, error) {
	rep := &report{Config: b.cfg, Space: map[string]space{}}
	var err error
	// Before the daemon starts, so that it does not disturb the figure.
	if rep.Wakeup, err = measureWakeup(); err != nil {
		return nil, err
	}
	if b.native, err = newNative(work); err != nil {
		return nil, err
	}
	if b.packed, err = newPackdir(work, b.cfg.Packdir, b.cfg.MountArgs); err != nil {
		return nil, err
	}
	for i, p := range b.phases() {
		pr, err := b.runPhase(i, p)
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w", p.name, err)
		}
		if p.name != "warm-up" {
			rep.Phases = append(rep.Phases, pr)
		}
		if p.name == "deliver-link" {
			if err := b.measureSpace(rep); err != nil {
				return nil, err
			}
		}
	}
	if rep.RSSBytes, err = b.packed.rssBytes(); err != nil {
		return nil, err
	}
	if rep.AnonBytes, err = b.packed.anonBytes(); err != nil {
		return nil, err
	}
	if b.cfg.Scale > 0 {
		if rep.Scale, err = b.scale(work); err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
	}
	return rep, nil
}

func (b *bench) runPhase(i int, p phase) (phaseResult, error) {
	pr := phaseResult{Name: p.name}
	order := []*target{b.native, b.packed}
	if i%2 == 1 {
		order = []*target{b.packed, b.native}
	}
	for _, t := range order {
		if p.cold {
			if err := t.dropCaches(); err != nil {
				return pr, err
			}
		}
		fmt.Fprintf(os.Stderr, "packdir-bench: %-13s %s\n", p.name, t.name)
		r, err := p.run(t)
		if err != nil {
			return pr, err
		}
		if t == b.native {
			pr.Native = r
		} else {
			pr.Packdir = r
		}
	}
	if p.after != nil {
		p.after()
	}
	if pr.Native.OpsPerSec > 0 {
		pr.Ratio = pr.Packdir.OpsPerSec / pr.Native.OpsPerSec
	}
	return pr, nil
}

// measureSpace records what each target's data holds on the disk once
// everything is delivered; packdir's is measured after an unmount, so that
// what the daemon still buffers is counted.
func (b *bench) measureSpace(rep *report) error {
	sp, err := measureSpace(b.native.data)
	if err != nil {
		return err
	}
	rep.Space["native"] = sp
	if err := b.packed.unmount(); err != nil {
		return err
	}
	sp, err = measureSpace(b.packed.data)
	rep.Space["packdir"] = sp
	if err != nil {
		return err
	}
	return b.packed.mount()
}
