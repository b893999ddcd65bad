package record

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

const (
	// HeaderSize is the size of a container header.
	HeaderSize = 40
	// RecordHeaderSize is the size of the header in front of every record.
	RecordHeaderSize = 24
	// FormatVersion is the container format version this package reads and writes.
	FormatVersion = 1
)

// containerMagic opens every container file.
var containerMagic = [8]byte{'P', 'A', 'C', 'K', 'D', 'I', 'R', 0}

// castagnoli is the CRC-32C table used for every checksum in the format.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ContainerHeader is the 40-byte header of a container file.
type ContainerHeader struct {
	Number  uint32   // container number; matches the file name
	StoreID [16]byte // binds the container to its store
}

// Encode returns the 40-byte encoding of h, CRC filled in.
func (h ContainerHeader) Encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b[0:8], containerMagic[:])
	binary.LittleEndian.PutUint16(b[8:10], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:16], h.Number)
	copy(b[16:32], h.StoreID[:])
	binary.LittleEndian.PutUint32(b[32:36], crc32.Checksum(b[0:32], castagnoli))
	return b
}

// DecodeHeader decodes and checks the container header at the start of b:
// its length, magic, version, reserved fields and CRC. Bytes past HeaderSize
// are ignored. It returns ErrShort if b is shorter than a header.
func DecodeHeader(b []byte) (ContainerHeader, error) {
	if len(b) < HeaderSize {
		return ContainerHeader{}, ErrShort
	}
	b = b[:HeaderSize]
	if !bytes.Equal(b[0:8], containerMagic[:]) {
		return ContainerHeader{}, formatErrorf("bad container magic % x", b[0:8])
	}
	if v := binary.LittleEndian.Uint16(b[8:10]); v != FormatVersion {
		return ContainerHeader{}, formatErrorf("unsupported container format version %d", v)
	}
	if got, want := binary.LittleEndian.Uint32(b[32:36]), crc32.Checksum(b[0:32], castagnoli); got != want {
		return ContainerHeader{}, formatErrorf("bad container header checksum %08x, want %08x", got, want)
	}
	if binary.LittleEndian.Uint16(b[10:12]) != 0 || binary.LittleEndian.Uint32(b[36:40]) != 0 {
		return ContainerHeader{}, formatErrorf("nonzero reserved bytes in container header")
	}
	var h ContainerHeader
	h.Number = binary.LittleEndian.Uint32(b[12:16])
	copy(h.StoreID[:], b[16:32])
	return h, nil
}
