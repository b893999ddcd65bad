package backend

import (
	"io"
	"log/slog"
	"testing"
)

// TestStore opens a new store in a temporary directory for a test, and
// when the test ends closes it, reopens it, and fails the test unless the
// full consistency check finds nothing wrong.
func TestStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	return testStoreWith(t, cfg, TestOptions())
}

func testStoreWith(t testing.TB, cfg Config, opts Options) *Store {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.isClosed() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
		CheckStore(t, dir)
	})
	return s
}

// TestOptions are store options for tests: errors only in the log.
func TestOptions() Options {
	return Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// CheckStore opens the store in dir and fails t if Check finds a problem.
func CheckStore(t testing.TB, dir string) {
	t.Helper()
	s, err := Open(dir, TestOptions())
	if err != nil {
		t.Errorf("reopen for check: %v", err)
		return
	}
	defer s.Close()
	r, err := s.Check()
	if err != nil {
		t.Errorf("check: %v", err)
		return
	}
	for _, p := range r.Problems {
		t.Errorf("check: %s", p)
	}
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
