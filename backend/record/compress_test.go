package record

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

func TestCompressedPayloadRoundTrip(t *testing.T) {
	msg := []byte("Subject: compressible\r\n\r\n" + strings.Repeat("the same line again\r\n", 200))
	body, flags, sum := EncodePayload(msg, true)
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
	if _, flags, _ := EncodePayload([]byte("x"), true); flags != 0 {
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
