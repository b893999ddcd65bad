package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const testMaxBody = 1 << 20

// errKind names the kind of an error the way the API promises them.
func errKind(err error) string {
	var fe *FormatError
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrShort):
		return "short"
	case errors.As(err, &fe):
		return "format"
	}
	return "other"
}

// checkErr fails t unless err is of kind want and, for a *FormatError, its
// message contains reason.
func checkErr(t *testing.T, err error, want, reason string) {
	t.Helper()
	if got := errKind(err); got != want {
		t.Fatalf("error %v: kind %s, want %s", err, got, want)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "record: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
	if reason != "" && !strings.Contains(err.Error(), reason) {
		t.Errorf("error %q does not say %q", err, reason)
	}
}

var testStoreID = [16]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []ContainerHeader{
		{},
		{Number: 1, StoreID: testStoreID},
		{Number: 0xffffffff, StoreID: [16]byte{15: 1}},
	} {
		b := h.Encode()
		if len(b) != HeaderSize {
			t.Fatalf("Encode(%+v): %d bytes", h, len(b))
		}
		got, err := DecodeHeader(b)
		if err != nil || got != h {
			t.Errorf("DecodeHeader(Encode(%+v)) = %+v, %v", h, got, err)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	good := ContainerHeader{Number: 7, StoreID: testStoreID}.Encode()
	tests := []struct {
		name   string
		edit   func(b []byte) []byte
		kind   string
		reason string
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "format", "magic"},
		{"version", func(b []byte) []byte { b[8] = 2; return withHeaderCRC(b) }, "format", "version 2"},
		{"crc", func(b []byte) []byte { b[20] ^= 1; return b }, "format", "checksum"},
		{"reserved10", func(b []byte) []byte { b[10] = 1; return withHeaderCRC(b) }, "format", "reserved"},
		{"reserved36", func(b []byte) []byte { b[39] = 1; return b }, "format", "reserved"},
		{"short", func(b []byte) []byte { return b[:HeaderSize-1] }, "short", ""},
		{"empty", func(b []byte) []byte { return nil }, "short", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHeader(tt.edit(bytes.Clone(good)))
			checkErr(t, err, tt.kind, tt.reason)
		})
	}
}

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func withHeaderCRC(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[32:36], crc(b[0:32]))
	return b
}

func TestEncodedSize(t *testing.T) {
	for n, want := range map[int]int64{0: 24, 1: 32, 7: 32, 8: 32, 9: 40, 38: 64, 40: 64, 41: 72} {
		if got := EncodedSize(n); got != want {
			t.Errorf("EncodedSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func testRecords() []Record {
	payload, _ := PayloadBody([]byte("Subject: hi\r\n\r\nbody\r\n"))
	op := AppendOp(nil, &Op{Code: OpUnlink, Time: 5, Parent: 9, Name: "x"})
	rs := []Record{
		{Type: TypePayload, Seq: 1, Body: payload},
		{Type: TypeOp, Seq: 2, Body: op},
		{Type: TypeSeal, Seq: 1 << 60, Body: SealBody(2, 2)},
	}
	for n := range 17 { // every padding length, twice
		rs = append(rs, Record{Type: TypeOp, Seq: uint64(100 + n), Body: bytes.Repeat([]byte{0xa5}, n)})
	}
	return rs
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range testRecords() {
		prefix := []byte("prefix")
		b := Append(prefix, r)
		if !bytes.Equal(b[:len(prefix)], prefix) {
			t.Fatal("Append changed dst's bytes")
		}
		b = b[len(prefix):]
		if int64(len(b)) != EncodedSize(len(r.Body)) || len(b)%8 != 0 {
			t.Fatalf("record with %d-byte body encodes to %d bytes", len(r.Body), len(b))
		}
		got, n, err := Decode(append(b, 0xff), testMaxBody) // a following byte is not consumed
		if err != nil || n != len(b) {
			t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(b))
		}
		if got.Type != r.Type || got.Flags != 0 || got.Seq != r.Seq || !bytes.Equal(got.Body, r.Body) {
			t.Errorf("Decode = %+v, want %+v", got, r)
		}
		if cap(got.Body) != len(got.Body) {
			t.Errorf("Body has spare capacity %d: an append would overwrite the padding", cap(got.Body)-len(got.Body))
		}
	}
}

// encodeTest returns a valid encoding of a record with a 13-byte body (so
// that it has 3 padding bytes).
func encodeTest() []byte {
	return Append(nil, Record{Type: TypeOp, Seq: 42, Body: []byte("thirteen byte")})
}

// withRecordCRC recomputes the CRC of the record b so that a test can damage
// a field and still get past the checksum.
func withRecordCRC(b []byte) []byte {
	n := binary.LittleEndian.Uint32(b[16:20])
	body := b[24 : 24+int(n)]
	binary.LittleEndian.PutUint32(b[20:24], crc(append(bytes.Clone(b[:20]), body...)))
	return b
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(b []byte) []byte
		maxBody uint32
		kind    string
		reason  string
	}{
		{"good", func(b []byte) []byte { return b }, testMaxBody, "nil", ""},
		{"magic", func(b []byte) []byte { b[3] = 'D'; return b }, testMaxBody, "format", "magic"},
		{"type0", func(b []byte) []byte { b[4] = 0; return withRecordCRC(b) }, testMaxBody, "format", "unknown record type 0"},
		{"type4", func(b []byte) []byte { b[4] = 4; return withRecordCRC(b) }, testMaxBody, "format", "unknown record type 4"},
		{"flags", func(b []byte) []byte { b[5] = 1; return withRecordCRC(b) }, testMaxBody, "format", "flags"},
		{"reserved", func(b []byte) []byte { b[7] = 1; return withRecordCRC(b) }, testMaxBody, "format", "reserved"},
		{"length past end", func(b []byte) []byte { b[16] = 20; return b }, testMaxBody, "short", ""},
		{"length past end, huge", func(b []byte) []byte { b[19] = 0x7f; return b }, 1 << 31, "short", ""},
		{"length over limit", func(b []byte) []byte { return b }, 12, "format", "exceeds limit 12"},
		{"length over limit, huge", func(b []byte) []byte { b[19] = 0x80; return b }, testMaxBody, "format", "exceeds limit"},
		{"length at limit", func(b []byte) []byte { return b }, 13, "nil", ""},
		{"crc field", func(b []byte) []byte { b[21] ^= 0x10; return b }, testMaxBody, "format", "checksum"},
		{"crc body", func(b []byte) []byte { b[30] ^= 0x01; return b }, testMaxBody, "format", "checksum"},
		{"crc seq", func(b []byte) []byte { b[8]++; return b }, testMaxBody, "format", "checksum"},
		{"length shorter", func(b []byte) []byte { b[16] = 12; return b }, testMaxBody, "format", "checksum"},
		{"padding", func(b []byte) []byte { b[39] = 1; return b }, testMaxBody, "format", "padding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Decode(tt.edit(encodeTest()), tt.maxBody)
			checkErr(t, err, tt.kind, tt.reason)
		})
	}
}

func TestDecodeShort(t *testing.T) {
	for _, r := range testRecords() {
		b := Append(nil, r)
		for cut := range len(b) {
			if _, _, err := Decode(b[:cut], testMaxBody); !errors.Is(err, ErrShort) {
				t.Fatalf("record with %d-byte body cut at %d of %d: %v, want ErrShort", len(r.Body), cut, len(b), err)
			}
		}
	}
}

func TestPayload(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("line\r\n"), 1000)} {
		body, sum := PayloadBody(data)
		gotSum, gotData, err := SplitPayload(body)
		if err != nil || gotSum != sum || !bytes.Equal(gotData, data) {
			t.Errorf("SplitPayload(PayloadBody(%d bytes)) = %x, %d bytes, %v", len(data), gotSum, len(gotData), err)
		}
		if !bytes.Equal(body[:32], sum[:]) {
			t.Error("body does not start with the hash")
		}
	}
	body, _ := PayloadBody([]byte("message"))
	body[len(body)-1] ^= 1
	_, _, err := SplitPayload(body)
	checkErr(t, err, "format", "payload hash mismatch")
	_, _, err = SplitPayload(body[:31])
	checkErr(t, err, "format", "shorter than its hash")
}

func TestSeal(t *testing.T) {
	body := SealBody(3, 1<<40)
	if len(body) != 16 {
		t.Fatalf("seal body of %d bytes", len(body))
	}
	n, last, err := ParseSeal(body)
	if err != nil || n != 3 || last != 1<<40 {
		t.Errorf("ParseSeal = %d, %d, %v", n, last, err)
	}
	for _, b := range [][]byte{nil, body[:15], append(body, 0)} {
		_, _, err := ParseSeal(b)
		checkErr(t, err, "format", "seal body")
	}
}

// le is a little-endian encoder for golden op bytes, written out field by
// field from FORMAT.md's table, independent of the codec's field lists.
type le []byte

func (b le) u8(v uint8) le   { return append(b, v) }
func (b le) u32(v uint32) le { return binary.LittleEndian.AppendUint32(b, v) }
func (b le) u64(v uint64) le { return binary.LittleEndian.AppendUint64(b, v) }
func (b le) str(s string) le {
	return append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
}
func (b le) raw(p []byte) le { return append(b, p...) }

func opHead(c OpCode) le { return le{}.u8(uint8(c)).u64(1700000000123456789) }

const opTime = 1700000000123456789

var testHash = [32]byte{0: 0xde, 1: 0xad, 31: 0xef}

// opTests holds one op of every code with its encoding as FORMAT.md lists
// the fields.
var opTests = []struct {
	op   Op
	want le
}{
	{Op{Code: OpUser, Time: opTime, Name: "alice", Ino: 2, UID: 1000, GID: 100},
		opHead(OpUser).str("alice").u64(2).u32(1000).u32(100)},
	{Op{Code: OpCreate, Time: opTime, Parent: 2, Name: "cur", Ino: 3, Mode: 0o40700, UID: 1000, GID: 100},
		opHead(OpCreate).u64(2).str("cur").u64(3).u32(0o40700).u32(1000).u32(100)},
	{Op{Code: OpLink, Time: opTime, Parent: 3, Name: "1700000000.M1P2.host:2,S", Ino: 9},
		opHead(OpLink).u64(3).str("1700000000.M1P2.host:2,S").u64(9)},
	{Op{Code: OpUnlink, Time: opTime, Parent: 3, Name: "x"},
		opHead(OpUnlink).u64(3).str("x")},
	{Op{Code: OpRename, Time: opTime, Parent: 3, Name: "a", NewParent: 4, NewName: "b:2,FS", Flags: RenameExchange},
		opHead(OpRename).u64(3).str("a").u64(4).str("b:2,FS").u32(2)},
	{Op{Code: OpRename, Time: opTime, Parent: 3, Name: "", NewParent: 3, NewName: ""},
		opHead(OpRename).u64(3).str("").u64(3).str("").u32(0)},
	{Op{Code: OpSetattr, Time: opTime, Ino: 9, Mask: SetMode | SetSize | SetAtime, Mode: 0o100600, UID: 1, GID: 2, Atime: -1, Mtime: 1 << 62, Size: 4096},
		opHead(OpSetattr).u64(9).u32(41).u32(0o100600).u32(1).u32(2).u64(0xffffffffffffffff).u64(1 << 62).u64(4096)},
	{Op{Code: OpCommit, Time: opTime, Ino: 9, Hash: testHash, Size: 1 << 26, Mtime: 1700000000123456789},
		opHead(OpCommit).u64(9).raw(testHash[:]).u64(1 << 26).u64(1700000000123456789)},
	{Op{Code: OpSpool, Time: -opTime, Ino: 1<<64 - 1},
		le{}.u8(8).u64(uint64(1<<64 - opTime)).u64(1<<64 - 1)},
	{Op{Code: OpSymlink, Time: opTime, Parent: 2, Name: "link", Ino: 10, Target: "../cur/x", UID: 1000, GID: 100},
		opHead(OpSymlink).u64(2).str("link").u64(10).str("../cur/x").u32(1000).u32(100)},
	{Op{Code: OpCreate, Time: opTime, Parent: 2, Name: strings.Repeat("n", 65535), Ino: 3},
		opHead(OpCreate).u64(2).str(strings.Repeat("n", 65535)).u64(3).u32(0).u32(0).u32(0)},
}

func TestOpRoundTrip(t *testing.T) {
	seen := map[OpCode]bool{}
	for _, tt := range opTests {
		seen[tt.op.Code] = true
		t.Run(tt.op.Code.String(), func(t *testing.T) {
			b := AppendOp([]byte("x"), &tt.op)
			if !bytes.Equal(b[1:], tt.want) {
				t.Fatalf("AppendOp:\n got %x\nwant %x", b[1:], []byte(tt.want))
			}
			got, err := ParseOp(b[1:])
			if err != nil || got != tt.op {
				t.Fatalf("ParseOp = %+v, %v\nwant %+v", got, err, tt.op)
			}
		})
	}
	for c := OpUser; c <= OpSymlink; c++ {
		if !seen[c] {
			t.Errorf("no round-trip test for %v", c)
		}
	}
}

func TestOpUnusedFieldsNotEncoded(t *testing.T) {
	full := Op{Code: OpSpool, Time: 1, Name: "n", Parent: 2, Ino: 3, NewParent: 4, NewName: "m",
		Mode: 5, UID: 6, GID: 7, Flags: 1, Mask: 1, Atime: 8, Mtime: 9, Size: 10, Hash: testHash, Target: "t"}
	got, err := ParseOp(AppendOp(nil, &full))
	if want := (Op{Code: OpSpool, Time: 1, Ino: 3}); err != nil || got != want {
		t.Errorf("ParseOp = %+v, %v; want %+v", got, err, want)
	}
}

func TestParseOpErrors(t *testing.T) {
	rename := opHead(OpRename).u64(3).str("a").u64(4).str("b")
	setattr := opHead(OpSetattr).u64(9).u32(64).u32(0).u32(0).u32(0).u64(0).u64(0).u64(0)
	tests := []struct {
		name   string
		body   []byte
		reason string
	}{
		{"empty", nil, "too short"},
		{"no time", []byte{1, 0, 0}, "too short"},
		{"code 0", le{}.u8(0).u64(0), "unknown op code 0"},
		{"code 11", le{}.u8(11).u64(0).u64(1), "unknown op code 11"},
		{"trailing", opHead(OpSpool).u64(1).u8(0), "1 trailing bytes"},
		{"string overrun", opHead(OpUnlink).u64(3).u32(0xffff).u8('a'), "unlink: body ends inside name"},
		{"string length cut", opHead(OpUnlink).u64(3).u8(1), "body ends inside name"},
		{"rename flags", rename.u32(3), "unknown flags 0x3"},
		{"setattr mask", setattr, "unknown mask bits 0x40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOp(tt.body)
			checkErr(t, err, "format", tt.reason)
		})
	}
}

func TestParseOpTruncated(t *testing.T) {
	for _, tt := range opTests {
		for cut := range len(tt.want) {
			if _, err := ParseOp(tt.want[:cut]); errKind(err) != "format" {
				t.Fatalf("%v cut at %d of %d: %v, want *FormatError", tt.op.Code, cut, len(tt.want), err)
			}
		}
	}
}

func TestAppendOpPanics(t *testing.T) {
	for name, op := range map[string]Op{
		"long name":   {Code: OpUnlink, Name: strings.Repeat("n", 65536)},
		"long target": {Code: OpSymlink, Target: strings.Repeat("t", 65536)},
		"code 0":      {Code: 0},
		"code 11":     {Code: 11},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("AppendOp did not panic")
				}
			}()
			AppendOp(nil, &op)
		})
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[string]string{
		OpUser.String(): "user", OpSymlink.String(): "symlink", OpCode(0).String(): "OpCode(0)",
		OpCode(200).String(): "OpCode(200)", TypeSeal.String(): "seal", Type(9).String(): "Type(9)",
	} {
		if v != want {
			t.Errorf("got %q, want %q", v, want)
		}
	}
}

// container returns a container header followed by rs, and the offset at
// which each record starts plus the end offset.
func container(rs []Record) ([]byte, []int64) {
	b := ContainerHeader{Number: 1, StoreID: testStoreID}.Encode()
	var offs []int64
	for _, r := range rs {
		offs = append(offs, int64(len(b)))
		b = Append(b, r)
	}
	return b, append(offs, int64(len(b)))
}

func TestScanner(t *testing.T) {
	rs := testRecords()
	b, offs := container(rs)
	// OneByteReader makes every record straddle reads.
	for name, r := range map[string]io.Reader{"whole": bytes.NewReader(b[HeaderSize:]), "bytewise": iotest.OneByteReader(bytes.NewReader(b[HeaderSize:]))} {
		t.Run(name, func(t *testing.T) {
			s := NewScanner(r, HeaderSize, testMaxBody)
			i := 0
			for ; s.Next(); i++ {
				got := s.Record()
				if got.Type != rs[i].Type || got.Seq != rs[i].Seq || !bytes.Equal(got.Body, rs[i].Body) {
					t.Fatalf("record %d = %+v, want %+v", i, got, rs[i])
				}
				if s.Offset() != offs[i] || s.End() != offs[i+1] {
					t.Fatalf("record %d at [%d, %d), want [%d, %d)", i, s.Offset(), s.End(), offs[i], offs[i+1])
				}
			}
			if s.Err() != nil || i != len(rs) || s.End() != int64(len(b)) {
				t.Fatalf("stopped after %d records at %d: %v", i, s.End(), s.Err())
			}
			if s.Next() {
				t.Error("Next after the end returned true")
			}
		})
	}
}

func TestScannerEmpty(t *testing.T) {
	s := NewScanner(bytes.NewReader(nil), HeaderSize, testMaxBody)
	if s.Next() || s.Err() != nil || s.End() != HeaderSize {
		t.Errorf("empty input: Next true or Err %v or End %d", s.Err(), s.End())
	}
}

func TestScannerTornTail(t *testing.T) {
	rs := testRecords()
	rs = append(rs, Record{Type: TypeOp, Seq: 999, Body: bytes.Repeat([]byte("z"), 45)}) // 3 bytes padding
	b, offs := container(rs)
	last := offs[len(offs)-2] // also the end of the previous good record
	for cut := last + 1; cut < int64(len(b)); cut++ {
		s := NewScanner(bytes.NewReader(b[HeaderSize:cut]), HeaderSize, testMaxBody)
		n := 0
		for s.Next() {
			n++
		}
		if !errors.Is(s.Err(), ErrShort) || s.End() != last || n != len(rs)-1 {
			t.Fatalf("cut at %d: %d records, End %d, Err %v; want %d, %d, ErrShort", cut, n, s.End(), s.Err(), len(rs)-1, last)
		}
		if s.Offset() != last {
			t.Fatalf("cut at %d: Offset %d, want %d", cut, s.Offset(), last)
		}
	}
}

func TestScannerCorrupt(t *testing.T) {
	rs := testRecords()
	b, offs := container(rs)
	b[offs[2]+RecordHeaderSize] ^= 0x80 // body of the seal record
	s := NewScanner(bytes.NewReader(b[HeaderSize:]), HeaderSize, testMaxBody)
	n := 0
	for s.Next() {
		n++
	}
	checkErr(t, s.Err(), "format", "checksum")
	if n != 2 || s.End() != offs[2] || s.Offset() != offs[2] {
		t.Errorf("%d records, End %d, Offset %d; want 2, %d, %d", n, s.End(), s.Offset(), offs[2], offs[2])
	}
	if s.Next() {
		t.Error("Next after an error returned true")
	}
}

func TestScannerHugeLength(t *testing.T) {
	b := encodeTest()
	binary.LittleEndian.PutUint32(b[16:20], 1<<30)
	s := NewScanner(bytes.NewReader(b), 0, 1<<30)
	if s.Next() || !errors.Is(s.Err(), ErrShort) {
		t.Fatalf("Next: Err %v, want ErrShort", s.Err())
	}
	if cap(s.buf) > 2*readChunk {
		t.Errorf("buffer grew to %d bytes for %d bytes of input", cap(s.buf), len(b))
	}
	s = NewScanner(bytes.NewReader(b), 0, 1<<30-1)
	s.Next()
	checkErr(t, s.Err(), "format", "exceeds limit")
}

func TestScannerLargeRecord(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 3*readChunk/16+1)
	b := Append(nil, Record{Type: TypePayload, Seq: 1, Body: body})
	s := NewScanner(bytes.NewReader(b), 0, uint32(len(body)))
	if !s.Next() || !bytes.Equal(s.Record().Body, body) || s.End() != int64(len(b)) {
		t.Fatalf("large record not read back: %v", s.Err())
	}
}

func TestScannerMisaligned(t *testing.T) {
	s := NewScanner(bytes.NewReader(encodeTest()), 41, testMaxBody)
	s.Next()
	checkErr(t, s.Err(), "format", "multiple of 8")
}

func TestScannerReadError(t *testing.T) {
	b := encodeTest()
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(b[:30]), iotest.ErrReader(boom))
	s := NewScanner(r, 0, testMaxBody)
	if s.Next() || !errors.Is(s.Err(), boom) || errors.Is(s.Err(), ErrShort) {
		t.Fatalf("Err %v, want wrapped %v", s.Err(), boom)
	}
	checkErr(t, s.Err(), "other", "offset 30")
}
