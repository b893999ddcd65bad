package record

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// readChunk bounds how far the Scanner reads ahead into its buffer, so that
// a damaged body length (up to maxBody, a whole container) costs memory only
// if that many bytes are really there.
const readChunk = 1 << 20

// Scanner reads the records of a container sequentially. It checks every
// record as Decode does: the header's magic, type and body length before
// it allocates for the body, then the CRC and the zero padding.
//
//	s := record.NewScanner(f, record.HeaderSize, limit)
//	for s.Next() {
//		use(s.Offset(), s.Record())
//	}
//	if err := s.Err(); err != nil {
//		// the bytes from s.End() on are not a valid record
//	}
type Scanner struct {
	r       *bufio.Reader
	maxBody uint32
	off     int64 // offset of the current record
	end     int64 // offset just past the last good record
	buf     []byte
	rec     Record
	err     error
}

// NewScanner returns a Scanner that reads records from r, which is
// positioned at container offset start (HeaderSize for a whole container).
// maxBody bounds body lengths, as for Decode.
func NewScanner(r io.Reader, start int64, maxBody uint32) *Scanner {
	return &Scanner{
		r:       bufio.NewReaderSize(r, 64<<10),
		maxBody: maxBody,
		off:     start,
		end:     start,
	}
}

// Next reads the next record. It returns false at a clean end of the input
// (right after a whole record) or on an error; Err tells which.
func (s *Scanner) Next() bool {
	if s.err != nil {
		return false
	}
	s.off = s.end
	s.rec = Record{}
	rec, size, err := s.read()
	if err != nil {
		s.err = err
		return false
	}
	if size == 0 {
		return false
	}
	s.rec = rec
	s.end = s.off + size
	return true
}

// read reads one record; size 0 with a nil error is a clean end.
func (s *Scanner) read() (Record, int64, error) {
	if s.off%8 != 0 {
		return Record{}, 0, formatErrorf("record offset %d is not a multiple of 8", s.off)
	}
	s.buf = s.buf[:0]
	if err := s.fill(RecordHeaderSize); err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, 0, nil
		}
		return Record{}, 0, err
	}
	rec, n, err := parseRecordHeader(s.buf, s.maxBody)
	if err != nil {
		return Record{}, 0, err
	}
	size := encodedSize32(n)
	if err := s.fill(size); err != nil {
		return Record{}, 0, err // never io.EOF: the header is in s.buf
	}
	if err := checkRecord(s.buf, n); err != nil {
		return Record{}, 0, err
	}
	end := RecordHeaderSize + int(n)
	rec.Body = s.buf[RecordHeaderSize:end:end]
	return rec, size, nil
}

// fill reads until s.buf holds n bytes, asking for at most readChunk bytes
// at a time so that the buffer stays within twice what was read plus a
// chunk. It returns io.EOF if nothing at all could be
// read into an empty buffer, ErrShort if the input ended part way, and
// other read errors wrapped with the offset.
func (s *Scanner) fill(n int64) error {
	for int64(len(s.buf)) < n {
		want := min(n, int64(len(s.buf))+readChunk)
		s.grow(int(want), int(n))
		have := len(s.buf)
		got, err := io.ReadFull(s.r, s.buf[have:want])
		s.buf = s.buf[:have+got]
		if err != nil {
			return s.readError(err)
		}
	}
	return nil
}

func (s *Scanner) readError(err error) error {
	switch {
	case errors.Is(err, io.EOF) && len(s.buf) == 0:
		return io.EOF
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrShort
	}
	return fmt.Errorf("record: read at offset %d: %w", s.off+int64(len(s.buf)), err)
}

// grow makes cap(s.buf) at least n, keeping its contents; it doubles the
// capacity to keep copies linear, but not past limit, the record's size.
func (s *Scanner) grow(n, limit int) {
	if cap(s.buf) >= n {
		return
	}
	b := make([]byte, len(s.buf), min(max(n, 2*cap(s.buf)), limit))
	copy(b, s.buf)
	s.buf = b
}

// Record returns the record read by the last successful Next. Its Body is
// valid until the next call to Next.
func (s *Scanner) Record() Record { return s.rec }

// Offset returns the container offset of the current record's first byte;
// after a failed Next, the offset of the record that failed.
func (s *Scanner) Offset() int64 { return s.off }

// End returns the offset just past the current record, padding included.
// After a failed Next it is the end of the last good record: where a torn
// tail is cut.
func (s *Scanner) End() int64 { return s.end }

// Err returns nil after a clean end of input, ErrShort if the input ended
// inside a record, a *FormatError if the bytes are not a valid record, or
// the reader's own error (wrapped) if reading failed.
func (s *Scanner) Err() error { return s.err }
