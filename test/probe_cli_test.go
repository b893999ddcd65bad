package test

import (
	"path/filepath"
	"testing"
)

// TestProbeUsageNamesSubcommand: a usage error of a subcommand of `user`
// points to that subcommand's help by its whole name. Before, `packdir
// user list STORE extra` said "list: name the store as an argument or
// with --store (see 'packdir list --help')", though the store was given
// and 'packdir list' is no command; `user add --uid -1` pointed to
// 'packdir add --help'.
func TestProbeUsageNamesSubcommand(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"user", "list", store, "extra"}, []string{"user list", "1 argument", "got 2", "'packdir user list --help'"}},
		{[]string{"user", "list"}, []string{"user list: name the store", "'packdir user list --help'"}},
		{[]string{"user", "add", "--uid", "-1", "x", store}, []string{"-uid", "'packdir user add --help'"}},
		{[]string{"user", "set", "--quota-bytes", "1MiB", "x", store, "extra"}, []string{"user set", "'packdir user set --help'"}},
		{[]string{"fsck", store, "extra"}, []string{"fsck needs 1 argument", "'packdir fsck --help'"}},
	}
	for _, c := range cases {
		wantCLIError(t, c.args, 2, c.want...)
	}
}
