package record

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// fuzzSeeds returns valid encodings to seed the corpora: every test record
// and a small container.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, r := range testRecords() {
		seeds = append(seeds, Append(nil, r))
	}
	for _, tt := range opTests[:len(opTests)-1] { // not the 64 KiB name
		seeds = append(seeds, Append(nil, Record{Type: TypeOp, Seq: 7, Body: AppendOp(nil, &tt.op)}))
	}
	b, _ := container(testRecords()[:4])
	return append(seeds, b[HeaderSize:])
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, uint32(testMaxBody))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxBody uint32) {
		r, n, err := Decode(data, maxBody)
		if err != nil {
			if k := errKind(err); k != "short" && k != "format" {
				t.Fatalf("Decode error of kind %s: %v", k, err)
			}
			return
		}
		if n > len(data) || n%8 != 0 || uint32(len(r.Body)) > maxBody {
			t.Fatalf("Decode consumed %d of %d bytes, body %d, limit %d", n, len(data), len(r.Body), maxBody)
		}
		if again := Append(nil, r); !bytes.Equal(again, data[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, data[:n])
		}
	})
}

func FuzzParseOp(f *testing.F) {
	for _, tt := range opTests[:len(opTests)-1] {
		f.Add([]byte(tt.want))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		op, err := ParseOp(body)
		if err != nil {
			if errKind(err) != "format" {
				t.Fatalf("ParseOp error is not a *FormatError: %v", err)
			}
			return
		}
		if again := AppendOp(nil, &op); !bytes.Equal(again, body) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, body)
		}
	})
}

// FuzzScanner checks that the Scanner never panics, that every record it
// returns re-encodes to the bytes it came from, and that it agrees with
// Decode applied record by record.
func FuzzScanner(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, uint32(testMaxBody), false)
		f.Add(s, uint32(testMaxBody), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxBody uint32, bytewise bool) {
		var r io.Reader = bytes.NewReader(data)
		if bytewise {
			r = iotest.OneByteReader(r)
		}
		s := NewScanner(r, 0, maxBody)
		for s.Next() {
			rec := s.Record()
			want, n, err := Decode(data[s.Offset():], maxBody)
			if err != nil || s.End() != s.Offset()+int64(n) {
				t.Fatalf("Scanner read a record at %d that Decode rejects: %v", s.Offset(), err)
			}
			if !bytes.Equal(Append(nil, rec), Append(nil, want)) {
				t.Fatalf("Scanner and Decode disagree at %d", s.Offset())
			}
		}
		checkScannerStop(t, s, data, maxBody)
	})
}

// checkScannerStop checks how the Scanner stopped against Decode at the same
// offset.
func checkScannerStop(t *testing.T, s *Scanner, data []byte, maxBody uint32) {
	end := s.End()
	if end > int64(len(data)) {
		t.Fatalf("End %d past the input (%d bytes)", end, len(data))
	}
	if s.Err() == nil {
		if end != int64(len(data)) {
			t.Fatalf("clean stop at %d before the end of input (%d bytes)", end, len(data))
		}
		return
	}
	_, _, err := Decode(data[end:], maxBody)
	if errKind(s.Err()) != errKind(err) {
		t.Fatalf("at %d Scanner says %v, Decode says %v", end, s.Err(), err)
	}
}
