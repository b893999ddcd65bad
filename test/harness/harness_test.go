package harness

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []MountEntry
	}{
		{
			name: "proc(5) example with an optional field",
			in:   "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
			want: []MountEntry{{Device: "98:0", MountPoint: "/mnt2", FSType: "ext3", Source: "/dev/root"}},
		},
		{
			name: "no optional fields",
			in:   "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n",
			want: []MountEntry{{Device: "0:21", MountPoint: "/proc", FSType: "proc", Source: "proc"}},
		},
		{
			name: "several optional fields",
			in:   "40 22 0:35 / /a rw shared:5 master:3 propagate_from:2 unbindable - tmpfs tmpfs rw\n",
			want: []MountEntry{{Device: "0:35", MountPoint: "/a", FSType: "tmpfs", Source: "tmpfs"}},
		},
		{
			name: "go-fuse mount with subtype",
			in:   "612 29 0:58 / /tmp/TestX123/001 rw,nosuid,nodev,relatime shared:310 - fuse.packdir packdir rw,user_id=0,group_id=0,allow_other\n",
			want: []MountEntry{{Device: "0:58", MountPoint: "/tmp/TestX123/001", FSType: "fuse.packdir", Source: "packdir"}},
		},
		{
			name: "escaped space, tab, newline and backslash",
			in:   `50 22 0:40 / /mnt/a\040b\011c\012d\134e rw - fuse /dev/fuse\040x rw` + "\n",
			want: []MountEntry{{Device: "0:40", MountPoint: "/mnt/a b\tc\nd\\e", FSType: "fuse", Source: "/dev/fuse x"}},
		},
		{
			name: "a backslash that is no escape stays",
			in:   `51 22 0:41 / /mnt/a\9x\04 rw - fuseblk src rw` + "\n",
			want: []MountEntry{{Device: "0:41", MountPoint: `/mnt/a\9x\04`, FSType: "fuseblk", Source: "src"}},
		},
		{
			name: "a hyphen inside the mount point is not the separator",
			in:   "52 22 0:42 / /- rw - fuse.sshfs host:/ rw\n",
			want: []MountEntry{{Device: "0:42", MountPoint: "/-", FSType: "fuse.sshfs", Source: "host:/"}},
		},
		{
			name: "several lines, blank line skipped",
			in: "22 1 0:21 / /proc rw - proc proc rw\n\n" +
				"612 29 0:58 / /m rw - fuse.packdir packdir rw\n",
			want: []MountEntry{
				{Device: "0:21", MountPoint: "/proc", FSType: "proc", Source: "proc"},
				{Device: "0:58", MountPoint: "/m", FSType: "fuse.packdir", Source: "packdir"},
			},
		},
		{name: "empty", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("ParseMountinfo: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseMountinfo =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

// TestUserArg: Start finds the user to add to a new store however the
// test spells --user.
func TestUserArg(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "alice"}, "alice"},
		{[]string{"--durability", "full", "-user", "bob", "--debug"}, "bob"},
		{[]string{"--user=carol"}, "carol"},
		{[]string{"-user=dave"}, "dave"},
		{[]string{"--debug"}, ""},
		{[]string{"--user"}, ""},
		{nil, ""},
	} {
		if got := userArg(c.args); got != c.want {
			t.Errorf("userArg(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	for _, in := range []string{
		"36 35 98:0 /mnt1\n",                        // too few fields
		"36 35 98:0 /mnt1 /mnt2 rw master:1 ext3\n", // no separator
		"36 35 98:0 /mnt1 /mnt2 rw - ext3\n",        // separator without source
	} {
		if got, err := ParseMountinfo(strings.NewReader(in)); err == nil {
			t.Errorf("ParseMountinfo(%q) = %q, want an error", in, got)
		}
	}
}

func TestFuseMountedIn(t *testing.T) {
	entries := []MountEntry{
		{MountPoint: "/", FSType: "ext4"},
		{MountPoint: "/tmp/ext", FSType: "ext4"},
		{MountPoint: "/tmp/m", FSType: "fuse.packdir"},
		{MountPoint: "/tmp/b", FSType: "fuseblk"},
		{MountPoint: "/tmp/a b", FSType: "fuse"},
	}
	tests := []struct {
		dir  string
		want bool
	}{
		{"/tmp/m", true},
		{"/tmp/m/", true},
		{"/tmp/b", true},
		{"/tmp/a b", true},
		{"/tmp/ext", false},
		{"/tmp", false},
		{"/tmp/m/sub", false},
		{"/tmp/mm", false},
	}
	for _, tt := range tests {
		if got := fuseMountedIn(entries, tt.dir); got != tt.want {
			t.Errorf("fuseMountedIn(%q) = %v, want %v", tt.dir, got, tt.want)
		}
	}
}

func TestIsFuseMountedSelf(t *testing.T) {
	// The real /proc/self/mountinfo parses, and / is no FUSE mount.
	mounted, err := IsFuseMounted("/")
	if err != nil {
		t.Fatal(err)
	}
	if mounted {
		t.Error("IsFuseMounted(/) = true")
	}
}
