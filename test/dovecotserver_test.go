package test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packdir/packdir/test/harness"
)

// The mail user Dovecot serves: an ordinary uid, since Dovecot refuses to
// serve mail as root (first_valid_uid is 500 by default). The uid need not
// exist in /etc/passwd: Dovecot takes it from its passwd-file.
const (
	mailUser     = "alice"
	mailPassword = "secret"
	mailUID      = 1000
	mailGID      = 1000
)

// dovecotServer is one `dovecot -F` process with a configuration of its
// own, serving IMAP on 127.0.0.1 from a packdir mount.
type dovecotServer struct {
	dir     string // holds the configuration, passwd-file, log, base_dir, state_dir
	maildir string // the mount: mail_location = maildir:MAILDIR
	conf    string
	log     string
	addr    string // 127.0.0.1:PORT of the IMAP listener
	pid     int
	done    chan struct{} // closed when the master process has exited
	waitErr error         // set before done is closed
}

// dovecotConfig is the whole configuration: Dovecot's defaults but for what
// a private instance needs (its own directories and log, IMAP only on
// 127.0.0.1, plain-text LOGIN, one user in a passwd-file). No setting is
// there for packdir's sake: mmap, fcntl locks, hard-link COPY, and the
// index, uidlist and control files inside the Maildir are all defaults.
const dovecotConfig = `# packdir test instance
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = %[1]s/passwd
}
mail_location = maildir:%[2]s
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener imaps {
    port = 0
  }
}
`

// newDovecot writes a configuration and passwd-file into a directory of its
// own, for serving maildir as mailUser. Start it with start.
func newDovecot(t *testing.T, maildir string) *dovecotServer {
	t.Helper()
	dir := mailUserDir(t)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, mailUID, mailGID); err != nil {
		t.Fatal(err)
	}
	// user:password:uid:gid:gecos:home:shell:extra, read by the auth
	// process, which runs as the dovecot user.
	passwd := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", mailUser, mailPassword, mailUID, mailGID, home)
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	return &dovecotServer{dir: dir, maildir: maildir, conf: filepath.Join(dir, "dovecot.conf"), log: filepath.Join(dir, "dovecot.log")}
}

// home is the mail user's home directory, which Dovecot leaves empty when
// it keeps all of its files inside the Maildir.
func (d *dovecotServer) home() string { return filepath.Join(d.dir, "home") }

// start runs `dovecot -F -c CONF` on a free port and returns once it greets
// an IMAP client. It is stopped when the test ends. A port another process
// took between our probe and Dovecot's bind is retried with a new one.
func (d *dovecotServer) start(t *testing.T) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := d.startOnce(t)
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(d.readLog(t), "Address already in use") {
			t.Fatalf("dovecot: %v; log:\n%s", err, d.readLog(t))
		}
	}
}

func (d *dovecotServer) startOnce(t *testing.T) error {
	t.Helper()
	port := freePort(t)
	d.addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf(dovecotConfig, d.dir, d.maildir, port)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dovecot", "-F", "-c", d.conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Own process group, so that the imap processes can be found and ended
	// with their master; SIGTERM if the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	d.pid, d.done = cmd.Process.Pid, make(chan struct{})
	go func(done chan struct{}) {
		d.waitErr = cmd.Wait()
		close(done)
	}(d.done)
	t.Cleanup(func() { d.stop(t) })
	if err := d.waitReady(); err != nil {
		d.stop(t)
		return fmt.Errorf("%w; output: %s", err, out.String())
	}
	return nil
}

// waitReady waits until the IMAP listener greets, or the master exits.
func (d *dovecotServer) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("dovecot (pid %d) exited at start: %v", d.pid, d.waitErr)
		default:
		}
		conn, err := net.Dial("tcp", d.addr)
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(imapHangGuard))
			greeting := make([]byte, 4)
			_, err = conn.Read(greeting)
			conn.Close()
			if err == nil && string(greeting) == "* OK" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecot (pid %d): no IMAP greeting on %s after 30s (%v)", d.pid, d.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the master by PID with SIGTERM, as an administrator would, and
// waits for it and the imap processes of its group, which hold files on
// the mount, to exit; SIGKILL to the group if they do not within 20s.
// Stop is idempotent.
func (d *dovecotServer) stop(t *testing.T) {
	t.Helper()
	if d.done == nil {
		return
	}
	select {
	case <-d.done:
	default:
		syscall.Kill(d.pid, syscall.SIGTERM)
	}
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Errorf("dovecot (pid %d) still running 20s after SIGTERM; killing its process group", d.pid)
		syscall.Kill(-d.pid, syscall.SIGKILL)
		<-d.done
	}
	d.done = nil
	if !waitGroupGone(d.pid) {
		t.Errorf("dovecot's processes (group %d) still running 20s after the master exited; killing them", d.pid)
		syscall.Kill(-d.pid, syscall.SIGKILL)
		waitGroupGone(d.pid)
	}
}

// waitGroupGone waits up to 20s for process group pgid to be empty.
func waitGroupGone(pgid int) bool {
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// login connects a new IMAP session and logs in as the mail user.
func (d *dovecotServer) login(t *testing.T) *imapClient {
	t.Helper()
	c := dialIMAP(t, d.addr)
	c.login(mailUser, mailPassword)
	return c
}

// doveadm runs `doveadm -c CONF args...` and fails the test unless it exits
// 0 without an error or warning.
func (d *dovecotServer) doveadm(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("doveadm", append([]string{"-c", d.conf}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("doveadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if bad := logProblems(string(out)); len(bad) > 0 {
		t.Errorf("doveadm %s reported:\n%s", strings.Join(args, " "), strings.Join(bad, "\n"))
	}
}

// deliver delivers msg into mailbox with dovecot-lda, Dovecot's own MDA,
// as a mail transfer agent would run it (as root; it takes the user's uid
// from the userdb), and fails the test unless it exits 0.
func (d *dovecotServer) deliver(t *testing.T, mailbox string, msg []byte) {
	t.Helper()
	cmd := exec.Command("/usr/lib/dovecot/dovecot-lda", "-c", d.conf, "-d", mailUser, "-m", mailbox)
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dovecot-lda -d %s -m %s: %v\n%s", mailUser, mailbox, err, out)
	}
}

// checkLog fails the test on any error, warning, fatal or panic in
// Dovecot's log: a mail server that finds its Maildir corrupted, or a file
// changed under it, says so there.
func (d *dovecotServer) checkLog(t *testing.T) {
	t.Helper()
	if bad := logProblems(d.readLog(t)); len(bad) > 0 {
		t.Errorf("dovecot log %s:\n%s", d.log, strings.Join(bad, "\n"))
	}
}

func (d *dovecotServer) readLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// logProblems returns the lines of a Dovecot log at a level above Info,
// but for the master's note of the SIGTERM that stop sends it.
func logProblems(log string) []string {
	var bad []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "master: Warning: Killed with signal 15 ") {
			continue
		}
		for _, level := range []string{"Warning:", "Error:", "Fatal:", "Panic:"} {
			if strings.Contains(line, level) {
				bad = append(bad, line)
				break
			}
		}
	}
	return bad
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dovecotOnPackdir mounts a new store for the mail user (created with its
// uid and gid before the mount), with mountArgs added to `packdir mount`,
// and starts Dovecot on it.
func dovecotOnPackdir(t *testing.T, mountArgs ...string) (*harness.Mount, *dovecotServer) {
	t.Helper()
	harness.RequireRoot(t)
	harness.RequireFuse(t)
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Fatalf("dovecot is not installed (scripts/test installs dovecot-imapd): %v", err)
	}
	store := filepath.Join(t.TempDir(), "store")
	harness.Run(t, "init", store)
	harness.Run(t, "user", "add", "--uid", fmt.Sprint(mailUID), "--gid", fmt.Sprint(mailGID), mailUser, store)
	mnt := mailUserDir(t)
	m := harness.Start(t, store, mnt, append([]string{"--user", mailUser}, mountArgs...)...)
	d := newDovecot(t, mnt)
	d.start(t)
	// Every test ends with a look at the log, after Dovecot has shut down.
	t.Cleanup(func() {
		d.stop(t)
		d.checkLog(t)
	})
	return m, d
}
