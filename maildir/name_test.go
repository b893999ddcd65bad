package maildir

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		unique, info, flags   string
		hasInfo               bool
		size, vsize           int64
		err                   error
		seen, flagged, trashd bool
	}{
		{name: "1030019783.M20P7.host", unique: "1030019783.M20P7.host", size: -1, vsize: -1},
		{name: "1030019783.M20P7.host:2,", unique: "1030019783.M20P7.host", info: "2,", hasInfo: true, size: -1, vsize: -1},
		{name: "1030019783.M20P7.host:2,S", unique: "1030019783.M20P7.host", info: "2,S", flags: "S", hasInfo: true, size: -1, vsize: -1, seen: true},
		{name: "1.M1.h,S=2841,W=2900:2,FRS", unique: "1.M1.h,S=2841,W=2900", info: "2,FRS", flags: "FRS", hasInfo: true,
			size: 2841, vsize: 2900, seen: true, flagged: true},
		{name: "1.M1.h,W=10:2,DT", unique: "1.M1.h,W=10", info: "2,DT", flags: "DT", hasInfo: true, size: -1, vsize: 10, trashd: true},
		{name: "1.M1.h,S=5,X=y:2,Sab", unique: "1.M1.h,S=5,X=y", info: "2,Sab", flags: "Sab", hasInfo: true, size: 5, vsize: -1, seen: true},
		{name: "1.M1.h:1,experimental", unique: "1.M1.h", info: "1,experimental", hasInfo: true, size: -1, vsize: -1},
		{name: "1.M1.h:2,FS:extra", unique: "1.M1.h", info: "2,FS:extra", flags: "FS:extra", hasInfo: true, size: -1, vsize: -1,
			err: ErrBadFlags, seen: true, flagged: true},
		{name: "1.M1.h:2,SF", unique: "1.M1.h", info: "2,SF", flags: "SF", hasInfo: true, size: -1, vsize: -1, err: ErrBadFlags, seen: true, flagged: true},
		{name: "1.M1.h:2,SS", unique: "1.M1.h", info: "2,SS", flags: "SS", hasInfo: true, size: -1, vsize: -1, err: ErrBadFlags, seen: true},
		{name: "1.M1.h,S=12x:2,S", unique: "1.M1.h,S=12x", info: "2,S", flags: "S", hasInfo: true, size: -1, vsize: -1, err: ErrBadField, seen: true},
		{name: "1.M1.h,S=:2,S", unique: "1.M1.h,S=", info: "2,S", flags: "S", hasInfo: true, size: -1, vsize: -1, err: ErrBadField, seen: true},
		{name: "1.M1.h,S=+3", unique: "1.M1.h,S=+3", size: -1, vsize: -1, err: ErrBadField},
		{name: "1.M1.h,S=99999999999999999999", unique: "1.M1.h,S=99999999999999999999", size: -1, vsize: -1, err: ErrBadField},
		{name: ":2,S", info: "2,S", hasInfo: true, size: -1, vsize: -1, err: ErrEmpty},
		{name: "", size: -1, vsize: -1, err: ErrEmpty},
		{name: "a/b", size: -1, vsize: -1, err: ErrBadChar},
		{name: "dovecot-uidlist", unique: "dovecot-uidlist", size: -1, vsize: -1},
	} {
		n, err := Parse(tc.name)
		if !errors.Is(err, tc.err) {
			t.Errorf("Parse(%q) error %v, want %v", tc.name, err, tc.err)
		}
		want := Name{Unique: tc.unique, HasInfo: tc.hasInfo, Info: tc.info, Flags: tc.flags, Size: tc.size, VSize: tc.vsize}
		if n != want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.name, n, want)
		}
		if n.Seen() != tc.seen || n.Flagged() != tc.flagged || n.Trashed() != tc.trashd {
			t.Errorf("Parse(%q): seen %v flagged %v trashed %v, want %v %v %v", tc.name, n.Seen(), n.Flagged(), n.Trashed(), tc.seen, tc.flagged, tc.trashd)
		}
		if tc.err != ErrBadChar && n.String() != tc.name {
			t.Errorf("Parse(%q).String() = %q", tc.name, n.String())
		}
	}
}

func TestWithFlags(t *testing.T) {
	for _, tc := range []struct{ name, flags, want string }{
		{"1.M1.h", "S", "1.M1.h:2,S"},
		{"1.M1.h:2,S", "SFS", "1.M1.h:2,FS"},
		{"1.M1.h,S=3:2,FS", "", "1.M1.h,S=3:2,"},
		{"1.M1.h:2,S", "baT", "1.M1.h:2,Tab"},
	} {
		n, _ := Parse(tc.name)
		if got := n.WithFlags(tc.flags).String(); got != tc.want {
			t.Errorf("%q with flags %q = %q, want %q", tc.name, tc.flags, got, tc.want)
		}
	}
}
