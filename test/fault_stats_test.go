package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/packdir/packdir/test/harness"
)

// TestFault14StatsEscapesNames: a folder whose name holds a newline and
// a tab, made through the mount, prints in `stats` as one escaped name,
// not as a line of its own; --json keeps the name as it is (issue 14,
// item 14).
func TestFault14StatsEscapesNames(t *testing.T) {
	harness.RequireFuse(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mnt := emptyDir(t, dir, "mnt")
	m := harness.Start(t, store, mnt, "--user", "alice")
	name := ".x\nuser root\tuid 0"
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		mustDo(t, os.Mkdir(filepath.Join(mnt, name, sub), 0o700))
	}
	m.Stop(t)

	out := harness.Run(t, "stats", store)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "user root") {
			t.Errorf("stats prints a line made by a folder name: %q\n%s", line, out)
		}
	}
	if !strings.Contains(out, strconv.Quote(name)) {
		t.Errorf("stats does not show the folder as %s:\n%s", strconv.Quote(name), out)
	}
	var st struct {
		Folders []struct {
			Folder string `json:"folder"`
		} `json:"folder_list"`
	}
	mustDo(t, json.Unmarshal([]byte(harness.Run(t, "stats", "--json", store)), &st))
	found := false
	for _, f := range st.Folders {
		found = found || f.Folder == name
	}
	if !found {
		t.Errorf("stats --json lacks the folder %q: %+v", name, st.Folders)
	}
}
