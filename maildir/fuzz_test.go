package maildir

import (
	"strings"
	"testing"
)

// FuzzParse checks, for any string, that Parse does not panic, that a
// name it accepts prints back as itself, that what it reports agrees with
// the name, and that WithFlags gives a name that parses to those flags.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1030019783.M20P7.host:2,FS", "1.M1.h,S=2841,W=2900:2,RS", "1.M1.h:1,x", "a:b:c", ",S=", "x,W=1,S=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := Parse(name)
		if err != nil {
			return
		}
		if n.String() != name {
			t.Fatalf("Parse(%q).String() = %q", name, n.String())
		}
		if n.Unique == "" || strings.ContainsRune(n.Unique, Separator) {
			t.Fatalf("Parse(%q): unique part %q", name, n.Unique)
		}
		if n.Size < -1 || n.VSize < -1 || n.Size >= 0 && !strings.Contains(n.Unique, ",S=") {
			t.Fatalf("Parse(%q): sizes %d %d", name, n.Size, n.VSize)
		}
		if !validFlags(n.Flags) {
			t.Fatalf("Parse(%q) accepted flags %q", name, n.Flags)
		}
		m, err := Parse(n.WithFlags("TS").String())
		if err != nil || m.Flags != "ST" || m.Unique != n.Unique {
			t.Fatalf("%q with flags TS: %+v, %v", name, m, err)
		}
	})
}
