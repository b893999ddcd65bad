package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

func printReport(out io.Writer, rep *report) {
	fmt.Fprintf(out, "packdir-bench: %d messages, seed %d, %d writers, cold phases %v, in %s\n\n",
		rep.Config.Messages, rep.Config.Seed, rep.Config.Writers, rep.Config.Cold, rep.Config.Dir)
	if w := rep.Wakeup; w.CrossCPUP50us > 0 {
		fmt.Fprintf(out, "this machine: waking a thread on another CPU and back takes %.1f µs (p50), on the same CPU %.1f µs; every FUSE request costs one\n\n",
			w.CrossCPUP50us, w.SameCPUP50us)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tops\tnative ops/s\tpackdir ops/s\tratio\tnative MB/s\tpackdir MB/s\tnative p50/p99 µs\tpackdir p50/p99 µs\t")
	for _, p := range rep.Phases {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.1f\t%.1f\t%s\t%s\t\n", p.Name, p.Packdir.Ops,
			p.Native.OpsPerSec, p.Packdir.OpsPerSec, p.Ratio, p.Native.MBPerSec, p.Packdir.MBPerSec,
			latency(p.Native), latency(p.Packdir))
	}
	tw.Flush()
	fmt.Fprintln(out)
	n, p := rep.Space["native"], rep.Space["packdir"]
	fmt.Fprintf(out, "space after delivery: native %.1f MB in %d inodes, packdir %.1f MB in %d inodes (blocks ratio %.2f, %.1f MB of message bytes)\n",
		mb(n.Blocks512*512), n.Inodes, mb(p.Blocks512*512), p.Inodes, float64(p.Blocks512)/float64(max(n.Blocks512, 1)), mb(n.Bytes))
	fmt.Fprintf(out, "packdir daemon RSS at the end: %.1f MB (%.1f MB anonymous, the rest mapped index pages)\n", mb(rep.RSSBytes), mb(rep.AnonBytes))
	if s := rep.Scale; s != nil {
		printScale(out, s)
	}
}

func printScale(out io.Writer, s *scaleReport) {
	fmt.Fprintf(out, "\nscale: one folder grown to %d messages, compared with it at %d\n", s.Full, s.Base)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tdeliver ops/s\tscan µs/entry warm base/full\tratio\tcold base/full\tratio\tRSS MB base/full\tanonymous MB full\t")
	for _, t := range []struct {
		name string
		r    scaleResult
	}{{"native", s.Native}, {"packdir", s.Packdir}} {
		r := t.r
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f / %.2f\t%.2f\t%.2f / %.2f\t%.2f\t%.1f / %.1f\t%.1f\t\n", t.name, r.Deliver.OpsPerSec,
			1e6*perEntry(r.ScanBaseWarm), 1e6*perEntry(r.ScanFullWarm), r.PerEntryRatioWarm,
			1e6*perEntry(r.ScanBaseCold), 1e6*perEntry(r.ScanFullCold), r.PerEntryRatioCold,
			mb(r.RSSBase), mb(r.RSSFull), mb(r.AnonFull))
	}
	tw.Flush()
}

func latency(r result) string {
	return fmt.Sprintf("%.0f / %.0f", r.P50us, r.P99us)
}

func mb(b int64) float64 { return float64(b) / 1e6 }
