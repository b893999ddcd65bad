package record

import (
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
// message data held by owner, and its key (PayloadKey). With compress,
// the bytes are stored as a zstd frame when that is smaller; otherwise as
// they are.
func EncodePayload(data []byte, compress bool, owner Owner) (body []byte, flags uint8, key [32]byte) {
	key = PayloadKey(data, owner)
	if owner.Scoped {
		flags = FlagOwner
	}
	head := payloadHead(key, owner, len(key)+ownerSize+len(data))
	if compress {
		enc, _ := coders()
		z := enc.EncodeAll(data, head)
		if len(z)-len(head) < len(data) {
			return z, flags | FlagZstd, key
		}
	}
	return append(head, data...), flags, key
}

// DecodePayload returns the key and the original message bytes of a
// payload record, decompressing them if its flags say so, and checks that
// the key is theirs. maxSize bounds the decompressed size (the store's
// message size limit), so that a damaged frame cannot claim a huge
// allocation.
func DecodePayload(r Record, maxSize int64) (key [32]byte, data []byte, err error) {
	key, owner, rest, err := splitHead(r)
	if err != nil {
		return key, nil, err
	}
	data = rest
	if r.Flags&FlagZstd != 0 {
		if data, err = decompress(rest, maxSize); err != nil {
			return key, nil, err
		}
	}
	if PayloadKey(data, owner) != key {
		return key, nil, formatErrorf("payload hash mismatch")
	}
	return key, data, nil
}

// decompress returns the content of one zstd frame whose header states a
// content size of at most maxSize.
func decompress(frame []byte, maxSize int64) ([]byte, error) {
	_, dec := coders()
	var h zstd.Header
	if err := h.Decode(frame); err != nil || !h.HasFCS || h.FrameContentSize > uint64(maxSize) {
		return nil, formatErrorf("compressed payload: bad or oversized zstd frame header")
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, h.FrameContentSize))
	if err != nil {
		return nil, formatErrorf("compressed payload: %v", err)
	}
	return data, nil
}
