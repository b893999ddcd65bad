package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Type is the kind of a record, byte 4 of its header.
type Type uint8

// Record types.
const (
	TypePayload Type = 1 // body: SHA-256 of a message, then the message
	TypeOp      Type = 2 // body: one namespace operation (Op)
	TypeSeal    Type = 3 // body: record count and last sequence number
)

func (t Type) String() string {
	switch t {
	case TypePayload:
		return "payload"
	case TypeOp:
		return "op"
	case TypeSeal:
		return "seal"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

func (t Type) known() bool { return t >= TypePayload && t <= TypeSeal }

// recordMagic opens every record so that fsck can resynchronise after damage.
var recordMagic = [4]byte{'P', 'K', 'R', 'C'}

// Record is one framed record.
type Record struct {
	Type  Type
	Flags uint8 // FlagZstd and FlagOwner on payload records, otherwise 0
	Seq   uint64
	Body  []byte
}

// EncodedSize is the on-disk size of a record with a body of n bytes,
// padding included.
func EncodedSize(n int) int64 {
	return (RecordHeaderSize + int64(n) + 7) &^ 7
}

// encodedSize32 is EncodedSize for a body length read from disk; it cannot
// overflow where int is 32 bits.
func encodedSize32(n uint32) int64 {
	return (RecordHeaderSize + int64(n) + 7) &^ 7
}

// Append appends r's encoding (24-byte header, body, zero padding to a
// multiple of 8) to dst and returns the extended slice. It panics if the body
// is longer than a record can describe (4 GiB); callers bound message sizes
// far below that.
func Append(dst []byte, r Record) []byte {
	if uint64(len(r.Body)) > math.MaxUint32 {
		panic("record: body longer than 4 GiB")
	}
	start := len(dst)
	dst = append(dst, recordMagic[:]...)
	dst = append(dst, byte(r.Type), r.Flags, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, r.Seq)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Body)))
	sum := crc32.Update(crc32.Checksum(dst[start:], castagnoli), castagnoli, r.Body)
	dst = binary.LittleEndian.AppendUint32(dst, sum)
	dst = append(dst, r.Body...)
	pad := EncodedSize(len(r.Body)) - RecordHeaderSize - int64(len(r.Body))
	return append(dst, make([]byte, pad)...)
}

// Decode decodes the record at the start of b. maxBody bounds the body
// length read from disk (callers pass the container size limit). It returns
// the record, whose Body aliases b, and the number of bytes consumed
// including padding.
//
// The checks run in the order of FORMAT.md, every length before it is used:
// magic, type, flags and reserved bytes, body length against maxBody, body
// length against len(b), CRC, padding. Errors: ErrShort when b ends before
// the record does (a torn tail at the end of a file), otherwise a
// *FormatError saying what is wrong.
func Decode(b []byte, maxBody uint32) (Record, int, error) {
	if len(b) < RecordHeaderSize {
		return Record{}, 0, ErrShort
	}
	r, n, err := parseRecordHeader(b[:RecordHeaderSize], maxBody)
	if err != nil {
		return Record{}, 0, err
	}
	size := encodedSize32(n)
	if int64(len(b)) < size {
		return Record{}, 0, ErrShort
	}
	if err := checkRecord(b[:size], n); err != nil {
		return Record{}, 0, err
	}
	end := RecordHeaderSize + int(n)
	r.Body = b[RecordHeaderSize:end:end]
	return r, int(size), nil
}

// parseRecordHeader checks the fields of a 24-byte record header that can be
// checked without the body and returns the record (without body) and the
// body length.
func parseRecordHeader(h []byte, maxBody uint32) (Record, uint32, error) {
	if !bytes.Equal(h[0:4], recordMagic[:]) {
		return Record{}, 0, formatErrorf("bad record magic % x", h[0:4])
	}
	r := Record{Type: Type(h[4]), Flags: h[5], Seq: binary.LittleEndian.Uint64(h[8:16])}
	if !r.Type.known() {
		return Record{}, 0, formatErrorf("unknown record type %d", h[4])
	}
	if r.Flags != 0 && (r.Type != TypePayload || r.Flags&^(FlagZstd|FlagOwner) != 0) {
		return Record{}, 0, formatErrorf("unsupported record flags %#02x", r.Flags)
	}
	if h[6] != 0 || h[7] != 0 {
		return Record{}, 0, formatErrorf("nonzero reserved bytes in record header")
	}
	n := binary.LittleEndian.Uint32(h[16:20])
	if n > maxBody {
		return Record{}, 0, formatErrorf("body length %d exceeds limit %d", n, maxBody)
	}
	return r, n, nil
}

// checkRecord verifies the CRC and the zero padding of rec, one whole
// encoded record with a body of n bytes.
func checkRecord(rec []byte, n uint32) error {
	end := RecordHeaderSize + int(n)
	got := binary.LittleEndian.Uint32(rec[20:24])
	want := crc32.Update(crc32.Checksum(rec[:20], castagnoli), castagnoli, rec[RecordHeaderSize:end])
	if got != want {
		return formatErrorf("bad record checksum %08x, want %08x", got, want)
	}
	for _, c := range rec[end:] {
		if c != 0 {
			return formatErrorf("nonzero padding after record body")
		}
	}
	return nil
}
