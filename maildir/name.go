package maildir

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Separator divides a message name into its unique part and its info.
const Separator = ':'

// Name is a parsed message file name.
type Name struct {
	Unique  string // the unique part, with any Maildir++ fields
	HasInfo bool   // the name has a separator (an info part, maybe empty)
	Info    string // everything after the separator
	Flags   string // the letters after "2,"; empty unless Info starts with "2,"
	Size    int64  // the S= field of the unique part, or -1
	VSize   int64  // the W= field of the unique part, or -1
}

// Errors of Parse. The Name it returns alongside is filled in as far as
// the name allows, so that a caller can still count the message.
var (
	// ErrEmpty is returned for an empty unique part.
	ErrEmpty = errors.New("maildir: empty unique part")
	// ErrBadChar is returned for a name holding '/' or NUL, which no
	// directory entry can.
	ErrBadChar = errors.New("maildir: '/' or NUL in a name")
	// ErrBadField is returned for an S= or W= field that is not a size.
	ErrBadField = errors.New("maildir: bad size field")
	// ErrBadFlags is returned for flags that are not letters in strictly
	// ascending ASCII order, as the specification requires.
	ErrBadFlags = errors.New("maildir: flags not letters in ASCII order")
)

// Parse parses a message file name such as
// "1030019783.M20P7.host,S=2841,W=2900:2,FS".
func Parse(name string) (Name, error) {
	n := Name{Size: -1, VSize: -1}
	if strings.ContainsAny(name, "/\x00") {
		return n, ErrBadChar
	}
	n.Unique, n.Info, n.HasInfo = strings.Cut(name, string(Separator))
	if n.Unique == "" {
		return n, ErrEmpty
	}
	err := n.parseFields()
	if flags, ok := strings.CutPrefix(n.Info, "2,"); ok {
		n.Flags = flags
		if !validFlags(flags) && err == nil {
			err = fmt.Errorf("%w: %q", ErrBadFlags, flags)
		}
	}
	return n, err
}

// parseFields reads the Maildir++ fields ",S=" and ",W=" of the unique
// part; other comma fields are left alone.
func (n *Name) parseFields() error {
	fields := strings.Split(n.Unique, ",")
	for _, f := range fields[1:] {
		key, val, ok := strings.Cut(f, "=")
		if !ok || key != "S" && key != "W" {
			continue
		}
		size, err := strconv.ParseInt(val, 10, 64)
		if err != nil || size < 0 || val[0] == '+' {
			return fmt.Errorf("%w: %s=%q", ErrBadField, key, val)
		}
		if key == "S" {
			n.Size = size
		} else {
			n.VSize = size
		}
	}
	return nil
}

func validFlags(flags string) bool {
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') || i > 0 && c <= flags[i-1] {
			return false
		}
	}
	return true
}

// String returns the file name n was parsed from.
func (n Name) String() string {
	if !n.HasInfo {
		return n.Unique
	}
	return n.Unique + string(Separator) + n.Info
}

// Has reports whether the message carries flag (one of "DFPRST" or a
// keyword letter).
func (n Name) Has(flag byte) bool { return strings.IndexByte(n.Flags, flag) >= 0 }

// Seen reports the S flag: the message has been read.
func (n Name) Seen() bool { return n.Has('S') }

// Flagged reports the F flag.
func (n Name) Flagged() bool { return n.Has('F') }

// Trashed reports the T flag: marked for deletion.
func (n Name) Trashed() bool { return n.Has('T') }

// WithFlags returns the name with its flags set to flags (sorted and
// without duplicates), as a rename from new/ to cur/ or a flag change
// makes it.
func (n Name) WithFlags(flags string) Name {
	seen := [256]bool{}
	for i := 0; i < len(flags); i++ {
		seen[flags[i]] = true
	}
	var b strings.Builder
	for c := 0; c < 256; c++ {
		if seen[c] {
			b.WriteByte(byte(c))
		}
	}
	n.HasInfo, n.Flags, n.Info = true, b.String(), "2,"+b.String()
	return n
}
