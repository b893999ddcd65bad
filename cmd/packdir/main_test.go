package main

import "testing"

// TestEscapeControl: a name made through the mount with a newline, a tab
// or an escape sequence cannot forge a line of fsck's output or drive the
// terminal; printable text, spaces and non-ASCII letters stay as they are.
func TestEscapeControl(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"damaged message /alice/cur/1.M1:2,S (inode 21)", "damaged message /alice/cur/1.M1:2,S (inode 21)"},
		{"/alice/.x\nproblem: none\n", `/alice/.x\nproblem: none\n`},
		{"/alice/.Entwürfe/cur/a\tb", `/alice/.Entwürfe/cur/a\tb`},
		{"/alice/\x1b[2J", `/alice/\x1b[2J`},
		{"/alice/\xff", `/alice/\xff`},
	} {
		if got := escapeControl(c.in); got != c.want {
			t.Errorf("escapeControl(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
