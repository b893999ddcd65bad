package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// corpusGen makes the benchmark's messages from a seed, so that native and
// packdir get the same bytes: RFC 5322 headers unique to each message
// (single-instance storage must not fold them) over bodies cut from a pool
// of text. Sizes follow a real mailbox: median about 4 KB, 10 % between 20
// and 100 KB, 1 % between 0.5 and 2 MB.
type corpusGen struct {
	seed uint64
	pool string
}

var words = strings.Fields(`the of and to in is that for it as with was on be by this are
from at or an have not but all they which one you had were their there been has
when who will more no if out so said what up its about into than them can only
other new some could time these two may then do first any my now such like our
over man me even most made after also did many before must through back years
where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between
both life being under never day same another know while last might us great old
year off come since against go came right used take three mailing list patch
server kernel release thanks regards message header please reply archive`)

func newCorpusGen(seed uint64) *corpusGen {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b strings.Builder
	const poolSize = 4 << 20
	for b.Len() < poolSize {
		line := 0
		for line < 72 {
			w := words[r.IntN(len(words))]
			b.WriteString(w)
			b.WriteByte(' ')
			line += len(w) + 1
		}
		b.WriteByte('\n')
	}
	return &corpusGen{seed: seed, pool: b.String()}
}

// size returns the size of message i. The bands go by i, so that every
// run of 100 messages has exactly its share of each (and even --quick a
// message over 1 MiB); the size within a band is random.
func (g *corpusGen) size(i int, r *rand.Rand) int {
	switch {
	case i%100 == 37:
		return 512<<10 + r.IntN(1536<<10)
	case i%10 == 3:
		return 20<<10 + r.IntN(80<<10)
	default:
		return smallSize(r)
	}
}

// smallSize is log-normal around 4 KB, kept below the 20 KB band.
func smallSize(r *rand.Rand) int {
	return int(min(max(4096*math.Exp(0.5*r.NormFloat64()), 600), 19<<10))
}

// message returns message i: its Maildir base name and its bytes.
func (g *corpusGen) message(i int) (string, []byte) {
	r := rand.New(rand.NewPCG(g.seed+uint64(i)*0x100000001b3, uint64(i)))
	return g.messageOf(i, r, g.size(i, r))
}

// smallMessage is message i drawn from the common sizes only (median
// 4 KB), for the scale phase, whose million messages must fit on a disk.
func (g *corpusGen) smallMessage(i int) (string, []byte) {
	r := rand.New(rand.NewPCG(g.seed+uint64(i)*0x100000001b3, uint64(i)))
	return g.messageOf(i, r, smallSize(r))
}

func (g *corpusGen) messageOf(i int, r *rand.Rand, size int) (string, []byte) {
	name := fmt.Sprintf("%d.M%06dP%dQ%d.bench.example.org", 1764800000+i/10, r.IntN(1000000), 10000+i%50000, i)
	hdr := fmt.Sprintf("Return-Path: <list-%d@example.org>\nReceived: from mx%d.example.org (mx.example.org [192.0.2.%d])\n"+
		"\tby mail.example.org with ESMTPS id %x\n\tfor <bench@example.org>; Thu, 4 Dec 2025 12:%02d:%02d +0000\n"+
		"From: Sender %d <sender%d@example.net>\nTo: bench@example.org\nSubject: benchmark message %d %s %s\n"+
		"Date: Thu, 4 Dec 2025 12:%02d:%02d +0000\nMessage-ID: <%d.%x@example.net>\nMIME-Version: 1.0\n"+
		"Content-Type: text/plain; charset=utf-8\n\n",
		i%97, i%7, i%250, r.Uint64(), i/60%60, i%60, i%1000, i, i,
		words[r.IntN(len(words))], words[r.IntN(len(words))], i/60%60, i%60, i, r.Uint64())
	data := make([]byte, 0, max(size, len(hdr)))
	data = append(data, hdr...)
	for len(data) < size {
		off := r.IntN(len(g.pool) - 1)
		n := min(size-len(data), len(g.pool)-off)
		data = append(data, g.pool[off:off+n]...)
	}
	return name, data
}
