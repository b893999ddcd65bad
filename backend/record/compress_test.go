package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestCompressedPayloadRoundTrip(t *testing.T) {
	msg := []byte("Subject: compressible\r\n\r\n" + strings.Repeat("the same line again\r\n", 200))
	body, flags, sum := EncodePayload(msg, true, Owner{})
	if flags != FlagZstd || len(body) >= len(msg) || sum != sha256.Sum256(msg) {
		t.Fatalf("flags %d, body %d bytes for %d, sum of the original: %v", flags, len(body), len(msg), sum == sha256.Sum256(msg))
	}
	enc := Append(nil, Record{Type: TypePayload, Flags: flags, Seq: 7, Body: body})
	r, _, err := Decode(enc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, data, err := DecodePayload(r, int64(len(msg)))
	if err != nil || got != sum || !bytes.Equal(data, msg) {
		t.Fatalf("decode: %v, same bytes %v", err, bytes.Equal(data, msg))
	}
	if _, _, err := DecodePayload(r, int64(len(msg)-1)); err == nil {
		t.Fatal("a frame larger than the size limit decoded")
	}
	// Incompressible bytes are stored as they are, flag clear.
	if _, flags, _ := EncodePayload([]byte("x"), true, Owner{}); flags != 0 {
		t.Fatal("a one-byte message was compressed")
	}
	// A damaged frame is a format error, not a panic or wrong bytes.
	bad := append([]byte(nil), body...)
	bad[len(bad)-3] ^= 0xff
	if _, _, err := DecodePayload(Record{Type: TypePayload, Flags: FlagZstd, Body: bad}, 1<<20); err == nil {
		t.Fatal("damaged frame decoded")
	}
	// The flag is only defined for payload records.
	op := Append(nil, Record{Type: TypeOp, Flags: FlagZstd, Seq: 1, Body: AppendOp(nil, &Op{Code: OpSpool, Ino: 1})})
	if _, _, err := Decode(op, 1<<20); err == nil || !strings.Contains(err.Error(), "unsupported record flags") {
		t.Fatalf("zstd flag on an op record: %v", err)
	}
}

// TestOwnedPayloadRoundTrip: a payload scoped to its owner is keyed by
// uid and bytes together, round-trips compressed or not, and a record
// whose uid or key was changed does not verify.
func TestOwnedPayloadRoundTrip(t *testing.T) {
	msg := []byte("Subject: to two users\r\n\r\n" + strings.Repeat("same list mail\r\n", 100))
	a, b := Owner{Scoped: true, UID: 1000}, Owner{Scoped: true, UID: 1001}
	if PayloadKey(msg, a) == PayloadKey(msg, b) || PayloadKey(msg, a) == PayloadKey(msg, Owner{}) {
		t.Fatal("two owners' copies of one message have one key")
	}
	// FORMAT.md's worked example, committed by uid 1000 of a "user" store.
	if k := PayloadKey([]byte("Hi!\r\n\n"), a); hex.EncodeToString(k[:]) != "19d96706bbb148af5f342e218442cb2bdecd645f666340ba086285a716cc4979" {
		t.Fatalf("the worked example's key is %x, not what FORMAT.md says", k)
	}
	if PayloadKey(msg, a) != PayloadKey(msg, Owner{Scoped: true, UID: 1000}) {
		t.Fatal("one owner's two copies have two keys")
	}
	for _, compress := range []bool{false, true} {
		body, flags, key := EncodePayload(msg, compress, a)
		if flags&FlagOwner == 0 || (flags&FlagZstd != 0) != compress || key != PayloadKey(msg, a) {
			t.Fatalf("compress %v: flags %#x, key of the owner %v", compress, flags, key == PayloadKey(msg, a))
		}
		r, _, err := Decode(Append(nil, Record{Type: TypePayload, Flags: flags, Seq: 1, Body: body}), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, data, err := DecodePayload(r, 1<<20)
		if err != nil || got != key || !bytes.Equal(data, msg) {
			t.Fatalf("compress %v: decode: %v, same key %v, same bytes %v", compress, err, got == key, bytes.Equal(data, msg))
		}
		forged := append([]byte(nil), body...)
		forged[32] ^= 1 // the uid: uid 1001's bytes under uid 1000's key
		if _, _, err := DecodePayload(Record{Type: TypePayload, Flags: flags, Body: forged}, 1<<20); err == nil {
			t.Fatalf("compress %v: a payload whose owner was changed verified", compress)
		}
		if _, _, err := DecodePayload(Record{Type: TypePayload, Flags: flags &^ FlagOwner, Body: body}, 1<<20); err == nil {
			t.Fatalf("compress %v: an owned payload read as a store-wide one verified", compress)
		}
	}
	if _, _, err := DecodePayload(Record{Type: TypePayload, Flags: FlagOwner, Body: make([]byte, 35)}, 1<<20); err == nil {
		t.Fatal("an owned payload body shorter than key and uid decoded")
	}
}
