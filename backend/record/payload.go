package record

import (
	"crypto/sha256"
	"encoding/binary"
)

// PayloadBody returns the body of a payload record for the message data:
// its SHA-256 followed by the data, and the SHA-256 itself.
func PayloadBody(data []byte) (body []byte, sum [32]byte) {
	sum = sha256.Sum256(data)
	body = make([]byte, 0, len(sum)+len(data))
	body = append(body, sum[:]...)
	return append(body, data...), sum
}

// SplitPayload splits a payload record body into the stored SHA-256 and the
// message data (which aliases body), and checks that the hash matches the
// data.
func SplitPayload(body []byte) (sum [32]byte, data []byte, err error) {
	if len(body) < len(sum) {
		return sum, nil, formatErrorf("payload body of %d bytes is shorter than its hash", len(body))
	}
	copy(sum[:], body)
	data = body[len(sum):]
	if sha256.Sum256(data) != sum {
		return sum, nil, formatErrorf("payload hash mismatch")
	}
	return sum, data, nil
}

// sealBodySize is the size of a seal record body.
const sealBodySize = 16

// SealBody returns the body of a seal record: the count of records in the
// container and the last sequence number, as FORMAT.md defines them.
func SealBody(records uint64, lastSeq uint64) []byte {
	b := make([]byte, 0, sealBodySize)
	b = binary.LittleEndian.AppendUint64(b, records)
	return binary.LittleEndian.AppendUint64(b, lastSeq)
}

// ParseSeal decodes a seal record body.
func ParseSeal(body []byte) (records, lastSeq uint64, err error) {
	if len(body) != sealBodySize {
		return 0, 0, formatErrorf("seal body is %d bytes, want %d", len(body), sealBodySize)
	}
	return binary.LittleEndian.Uint64(body[0:8]), binary.LittleEndian.Uint64(body[8:16]), nil
}
