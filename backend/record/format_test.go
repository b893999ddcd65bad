package record

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// formatExample is the worked example of FORMAT.md as `hexdump -C` prints it.
const formatExample = `00000000  50 41 43 4b 44 49 52 00  01 00 00 00 01 00 00 00  |PACKDIR.........|
00000010  00 11 22 33 44 55 66 77  88 99 aa bb cc dd ee ff  |.."3DUfw........|
00000020  34 71 fb 52 00 00 00 00  50 4b 52 43 01 00 00 00  |4q.R....PKRC....|
00000030  01 00 00 00 00 00 00 00  26 00 00 00 13 8e 17 45  |........&......E|
00000040  23 3d f5 8c b7 e6 54 26  4c c0 77 9c 3b 0c cf cd  |#=....T&L.w.;...|
00000050  75 2f e4 1e 23 bb 87 a6  47 4a 58 e1 b4 a3 3a c6  |u/..#...GJX...:.|
00000060  48 69 21 0d 0a 0a 00 00                           |Hi!.....|
00000068
`

// TestFormatExample builds FORMAT.md's one-message container and checks it
// against the golden dump, and that FORMAT.md shows that same dump.
func TestFormatExample(t *testing.T) {
	b := ContainerHeader{Number: 1, StoreID: testStoreID}.Encode()
	body, _ := PayloadBody([]byte("Hi!\r\n\n"))
	b = Append(b, Record{Type: TypePayload, Seq: 1, Body: body})
	if got := hexdump(b); got != formatExample {
		t.Fatalf("worked example:\n%s\nwant:\n%s", got, formatExample)
	}
	checkExampleDecodes(t, b)
	spec, err := os.ReadFile("../../FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(spec, []byte("```\n"+formatExample+"```\n")) {
		t.Error("FORMAT.md's worked example differs from the golden dump in this test")
	}
}

func checkExampleDecodes(t *testing.T, b []byte) {
	t.Helper()
	h, err := DecodeHeader(b)
	if err != nil || h.Number != 1 || h.StoreID != testStoreID {
		t.Fatalf("DecodeHeader = %+v, %v", h, err)
	}
	r, n, err := Decode(b[HeaderSize:], testMaxBody)
	if err != nil || n != 64 || r.Seq != 1 || r.Type != TypePayload {
		t.Fatalf("Decode = %+v, %d, %v", r, n, err)
	}
	if _, data, err := SplitPayload(r.Body); err != nil || string(data) != "Hi!\r\n\n" {
		t.Fatalf("SplitPayload = %q, %v", data, err)
	}
}

// hexdump formats b as `hexdump -C` does, without its folding of repeated
// lines into "*" (the example has none).
func hexdump(b []byte) string {
	var sb strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		fmt.Fprintf(&sb, "%08x  %-49s |%s|\n", off, hexColumns(line), printable(line))
	}
	fmt.Fprintf(&sb, "%08x\n", len(b))
	return sb.String()
}

func hexColumns(line []byte) string {
	var sb strings.Builder
	for i, c := range line {
		if i == 8 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02x ", c)
	}
	return sb.String()
}

func printable(line []byte) string {
	p := bytes.Clone(line)
	for i, c := range p {
		if c < 0x20 || c > 0x7e {
			p[i] = '.'
		}
	}
	return string(p)
}
