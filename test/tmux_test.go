package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmuxTimeout bounds how long a test waits for a terminal program to
// show something, or to exit; it is a deadline for a hang, not a measure.
const tmuxTimeout = 20 * time.Second

// tmuxSession is a terminal program (mutt) running alone in a detached
// tmux session on a private server: its socket is in a t.TempDir(), so no
// other tmux user or test can see or reach it.
type tmuxSession struct {
	socket    string
	env       []string
	pid       int // the program's: tmux runs "exec program" in the pane
	serverPID int
}

// startTmux runs argv in a 200x50 terminal with HOME set to home, and
// kills the tmux server and checks that the program is gone when the
// test ends, whatever happened.
func startTmux(t *testing.T, home string, argv ...string) *tmuxSession {
	t.Helper()
	s := &tmuxSession{
		socket: filepath.Join(t.TempDir(), "tmux.sock"),
		env:    tmuxEnv(home),
	}
	s.tmux(t, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50", "exec "+tmuxQuote(argv))
	t.Cleanup(func() { s.kill(t) })
	var err error
	if s.serverPID, err = strconv.Atoi(s.tmux(t, "display-message", "-p", "#{pid}")); err != nil {
		t.Fatalf("tmux server pid: %v", err)
	}
	if s.pid, err = strconv.Atoi(s.tmux(t, "display-message", "-p", "#{pane_pid}")); err != nil {
		t.Fatalf("tmux pane pid: %v", err)
	}
	return s
}

// tmuxEnv is the test's environment for a fresh tmux server: our HOME, a
// plain TERM, and no TMUX, which would make tmux refuse to nest when the
// tests themselves run inside tmux.
func tmuxEnv(home string) []string {
	env := []string{"HOME=" + home, "TERM=xterm", "LANG=C.UTF-8"}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "TERM", "LANG", "LC_ALL", "TMUX", "TMUX_PANE", "TMUX_TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// tmux runs a tmux command against the session's server and returns its
// trimmed output; a failure fails the test.
func (s *tmuxSession) tmux(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.tmuxExit(args...)
	if err != nil {
		t.Fatalf("tmux %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (s *tmuxSession) tmuxExit(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tmuxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tmux", append([]string{"-S", s.socket}, args...)...)
	cmd.Env = s.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, bytes.TrimSpace(errOut.Bytes()))
	}
	return strings.TrimSpace(out.String()), nil
}

// keys sends tmux key names (Enter, Escape, q) one after another.
func (s *tmuxSession) keys(t *testing.T, keys ...string) {
	t.Helper()
	s.tmux(t, append([]string{"send-keys"}, keys...)...)
}

// typeText sends text literally, as typed, without key-name lookup.
func (s *tmuxSession) typeText(t *testing.T, text string) {
	t.Helper()
	s.tmux(t, "send-keys", "-l", text)
}

// screen returns what the terminal shows now.
func (s *tmuxSession) screen(t *testing.T) string {
	t.Helper()
	return s.tmux(t, "capture-pane", "-p")
}

// waitScreen polls the terminal until it shows want, and fails the test
// with the screen if it does not within tmuxTimeout.
func (s *tmuxSession) waitScreen(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(tmuxTimeout)
	for {
		screen := s.screen(t)
		if strings.Contains(screen, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal does not show %q after %v; it shows:\n%s", want, tmuxTimeout, screen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits for the program to exit on its own (after q).
func (s *tmuxSession) waitExit(t *testing.T) {
	t.Helper()
	if !tmuxWaitGone(s.pid, tmuxTimeout) {
		t.Fatalf("pid %d still runs %v after it was told to quit; screen:\n%s", s.pid, tmuxTimeout, s.screen(t))
	}
}

// kill ends the tmux server, which hangs up on the program, then makes
// sure both are gone, by PID.
func (s *tmuxSession) kill(t *testing.T) {
	if _, err := s.tmuxExit("kill-server"); err != nil && tmuxPIDAlive(s.serverPID) {
		t.Errorf("tmux kill-server: %v", err)
	}
	for _, pid := range []int{s.pid, s.serverPID} {
		if pid <= 0 || tmuxWaitGone(pid, tmuxTimeout) {
			continue
		}
		t.Errorf("pid %d still runs after tmux kill-server; killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		tmuxWaitGone(pid, tmuxTimeout)
	}
}

// tmuxWaitGone polls until pid no longer runs, or d has passed.
func tmuxWaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for tmuxPIDAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// tmuxPIDAlive reports whether pid exists and is not a zombie: the
// program is not our child, and whoever inherits it may reap it late.
func tmuxPIDAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after "(comm)", is the state.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// tmuxQuote quotes argv for the sh -c that tmux runs a command with.
func tmuxQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
