package record

import (
	"crypto/sha256"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// FlagZstd, bit 0 of a record's flags byte, says that the message bytes of
// a payload record are one zstd frame. The SHA-256 before them is of the
// original bytes, so a payload's identity does not depend on compression.
const FlagZstd uint8 = 1

var (
	zOnce    sync.Once
	zEncoder *zstd.Encoder
	zDecoder *zstd.Decoder
)

// coders are created once: zstd encoders and decoders are safe for
// concurrent EncodeAll and DecodeAll and costly to create.
func coders() (*zstd.Encoder, *zstd.Decoder) {
	zOnce.Do(func() {
		zEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		zDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	})
	return zEncoder, zDecoder
}

// EncodePayload returns the body and flags of a payload record for the
// message data, and its SHA-256. With compress, the bytes are stored as a
// zstd frame when that is smaller; otherwise as they are.
func EncodePayload(data []byte, compress bool) (body []byte, flags uint8, sum [32]byte) {
	sum = sha256.Sum256(data)
	if compress {
		enc, _ := coders()
		z := enc.EncodeAll(data, append(make([]byte, 0, len(sum)+len(data)/2), sum[:]...))
		if len(z)-len(sum) < len(data) {
			return z, FlagZstd, sum
		}
	}
	body = make([]byte, 0, len(sum)+len(data))
	body = append(body, sum[:]...)
	return append(body, data...), 0, sum
}

// DecodePayload returns the SHA-256 and the original message bytes of a
// payload record, decompressing them if its flags say so, and checks the
// hash. maxSize bounds the decompressed size (the store's message size
// limit), so that a damaged frame cannot claim a huge allocation.
func DecodePayload(r Record, maxSize int64) (sum [32]byte, data []byte, err error) {
	if r.Flags&FlagZstd == 0 {
		return SplitPayload(r.Body)
	}
	if len(r.Body) < len(sum) {
		return sum, nil, formatErrorf("payload body of %d bytes is shorter than its hash", len(r.Body))
	}
	copy(sum[:], r.Body)
	_, dec := coders()
	frame := r.Body[len(sum):]
	var h zstd.Header
	if err := h.Decode(frame); err != nil || !h.HasFCS || h.FrameContentSize > uint64(maxSize) {
		return sum, nil, formatErrorf("compressed payload: bad or oversized zstd frame header")
	}
	data, err = dec.DecodeAll(frame, make([]byte, 0, h.FrameContentSize))
	if err != nil {
		return sum, nil, formatErrorf("compressed payload: %v", err)
	}
	if sha256.Sum256(data) != sum {
		return sum, nil, formatErrorf("payload hash mismatch")
	}
	return sum, data, nil
}
