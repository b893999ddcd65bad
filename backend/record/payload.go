package record

import (
	"crypto/sha256"
	"encoding/binary"
)

// FlagOwner, bit 1 of a payload record's flags, says that the payload's
// identity includes its owner's uid (de-duplication scoped per user):
// the body is the key, the owner's uid (u32), then the message bytes or
// zstd frame. Without it the body is the key, then the bytes or frame.
const FlagOwner uint8 = 2

// ownerSize is the size of the uid after the key of an owned payload.
const ownerSize = 4

// Owner scopes a payload's identity. The zero value is a store-wide
// payload, whose key is the SHA-256 of its bytes; with Scoped, the key is
// the SHA-256 of that SHA-256 followed by UID (u32 little-endian), so that
// the same bytes held by two uids are two payloads. A store keeps payloads
// of one kind only (its de-duplication scope), so keys of the two kinds
// never meet in one index.
type Owner struct {
	Scoped bool
	UID    uint32
}

// PayloadKey is the identity of the message data held by owner: the key
// of its payload record and of the index's payloads bucket.
func PayloadKey(data []byte, owner Owner) [32]byte {
	sum := sha256.Sum256(data)
	if !owner.Scoped {
		return sum
	}
	return sha256.Sum256(binary.LittleEndian.AppendUint32(sum[:], owner.UID))
}

// payloadHead is the start of a payload record body: the key, and the
// owner's uid if scoped.
func payloadHead(key [32]byte, owner Owner, capacity int) []byte {
	head := make([]byte, 0, capacity)
	head = append(head, key[:]...)
	if owner.Scoped {
		head = binary.LittleEndian.AppendUint32(head, owner.UID)
	}
	return head
}

// PayloadBody returns the body of an uncompressed, store-wide payload
// record for the message data, and its key (the SHA-256 of data).
func PayloadBody(data []byte) (body []byte, sum [32]byte) {
	body, _, sum = EncodePayload(data, false, Owner{})
	return body, sum
}

// SplitPayload splits the body of an uncompressed, store-wide payload
// record into its key and the message data (which aliases body), and
// checks that the key is the SHA-256 of the data.
func SplitPayload(body []byte) (sum [32]byte, data []byte, err error) {
	return DecodePayload(Record{Type: TypePayload, Body: body}, int64(len(body)))
}

// splitHead splits a payload record body into its key, its owner and the
// stored bytes after them (message bytes or a zstd frame).
func splitHead(r Record) (key [32]byte, owner Owner, rest []byte, err error) {
	n := len(key)
	if r.Flags&FlagOwner != 0 {
		n += ownerSize
	}
	if len(r.Body) < n {
		return key, owner, nil, formatErrorf("payload body of %d bytes is shorter than its hash", len(r.Body))
	}
	copy(key[:], r.Body)
	if r.Flags&FlagOwner != 0 {
		owner = Owner{Scoped: true, UID: binary.LittleEndian.Uint32(r.Body[len(key):])}
	}
	return key, owner, r.Body[n:], nil
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
