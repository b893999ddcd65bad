package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestProcState checks the report of a stuck daemon on this process: its
// open files (this file, held open) and every thread with its wait channel.
func TestProcState(t *testing.T) {
	f, err := os.Open("target_test.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := procState(os.Getpid())
	if want := fmt.Sprintf("  fd %d -> ", f.Fd()); !strings.Contains(got, want+"/") || !strings.Contains(got, "target_test.go") {
		t.Errorf("report does not list fd %d on target_test.go:\n%s", f.Fd(), got)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(got, "  thread "); n < len(tasks)/2 || n == 0 {
		t.Errorf("report lists %d threads, the process has about %d:\n%s", n, len(tasks), got)
	}
}
