package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// scaleReport is the scale phase: one folder grown to Full messages, its
// readdir+stat per entry compared with the same folder at Base messages.
type scaleReport struct {
	Base    int         `json:"base"`
	Full    int         `json:"full"`
	Native  scaleResult `json:"native"`
	Packdir scaleResult `json:"packdir"`
}

type scaleResult struct {
	Deliver      result `json:"deliver"`
	ScanBaseWarm result `json:"scan_base_warm"`
	ScanFullWarm result `json:"scan_full_warm"`
	ScanBaseCold result `json:"scan_base_cold"`
	ScanFullCold result `json:"scan_full_cold"`
	// PerEntryRatio* is the time per entry at Full over that at Base.
	PerEntryRatioWarm float64 `json:"per_entry_ratio_warm"`
	PerEntryRatioCold float64 `json:"per_entry_ratio_cold"`
	RSSBase           int64   `json:"rss_base_bytes,omitempty"`
	RSSFull           int64   `json:"rss_full_bytes,omitempty"`
	AnonFull          int64   `json:"anon_full_bytes,omitempty"`
}

const scaleFolder = ".Scale"

// scale grows .Scale/new to cfg.ScaleBase and then to cfg.Scale messages
// on both targets, scanning it warm and cold at each size.
func (b *bench) scale(work string) (*scaleReport, error) {
	rep := &scaleReport{Base: b.cfg.ScaleBase, Full: b.cfg.Scale}
	targets := []*target{b.native, b.packed}
	results := []*scaleResult{&rep.Native, &rep.Packdir}
	for _, t := range targets {
		for _, d := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(t.root, scaleFolder, d), 0o700); err != nil {
				return nil, err
			}
		}
	}
	first := 1 << 30 // names apart from the main workload's
	for step, upto := range []int{b.cfg.ScaleBase, b.cfg.Scale} {
		for i, t := range targets {
			r := results[i]
			if err := b.scaleStep(t, r, first, upto, step == 0); err != nil {
				return nil, err
			}
		}
		first += upto
	}
	for _, r := range results {
		r.PerEntryRatioWarm = perEntry(r.ScanFullWarm) / perEntry(r.ScanBaseWarm)
		r.PerEntryRatioCold = perEntry(r.ScanFullCold) / perEntry(r.ScanBaseCold)
	}
	return rep, nil
}

// scaleStep delivers until the folder holds upto messages, then scans it
// cold and warm.
func (b *bench) scaleStep(t *target, r *scaleResult, first, upto int, base bool) error {
	have := r.Deliver.Ops
	fmt.Fprintf(os.Stderr, "packdir-bench: scale %s: delivering %d\n", t.name, upto-have)
	root := filepath.Join(t.root, scaleFolder)
	d, err := b.w.deliver(t.name, root, first, upto-have, b.cfg.Writers, false, b.w.gen.smallMessage)
	if err != nil {
		return err
	}
	r.Deliver.Ops += d.Ops
	r.Deliver.Bytes += d.Bytes
	r.Deliver.Seconds += d.Seconds
	r.Deliver.OpsPerSec = float64(r.Deliver.Ops) / r.Deliver.Seconds
	r.Deliver.MBPerSec = float64(r.Deliver.Bytes) / 1e6 / r.Deliver.Seconds
	// Latencies of the last (larger) step: the folder is at its biggest.
	r.Deliver.P50us, r.Deliver.P99us = d.P50us, d.P99us
	cold, warm := &r.ScanFullCold, &r.ScanFullWarm
	if base {
		cold, warm = &r.ScanBaseCold, &r.ScanBaseWarm
	}
	dirs := []string{filepath.Join(scaleFolder, "new")}
	if b.cfg.Cold {
		if err := t.dropCaches(); err != nil {
			return err
		}
		if *cold, err = scan(t, dirs); err != nil {
			return err
		}
	}
	if *warm, err = scan(t, dirs); err != nil {
		return err
	}
	if t.pid() != 0 {
		rss, err := t.rssBytes()
		if err != nil {
			return err
		}
		if base {
			r.RSSBase = rss
			return nil
		}
		r.RSSFull = rss
		r.AnonFull, err = t.anonBytes()
		return err
	}
	return nil
}

func perEntry(r result) float64 {
	if r.Ops == 0 {
		return 0
	}
	return r.Seconds / float64(r.Ops)
}
