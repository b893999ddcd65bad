package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imapClient is a line-based IMAP4rev1 client (RFC 3501), just enough to
// drive a server the way a mail program does: tagged commands, untagged
// responses, synchronizing literals both ways, and IDLE (RFC 2177). A test
// reads what the server said and decides; the client judges nothing.
type imapClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

// imapResp is one server response: its text, in which each literal keeps
// only its {n} announcement, and the literals' bytes in order.
type imapResp struct {
	text     string
	literals [][]byte
}

// imapHangGuard bounds every read and write, so that a server or mount that
// hangs fails the test instead of blocking it until the global timeout. It
// is no performance threshold: a healthy exchange takes milliseconds.
const imapHangGuard = 2 * time.Minute

// literalAnnounce matches the {n} that ends a line when a literal follows.
var literalAnnounce = regexp.MustCompile(`\{(\d+)\}$`)

// dialIMAP connects to addr, reads the greeting and closes the connection
// when the test ends.
func dialIMAP(t testing.TB, addr string) *imapClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("imap: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &imapClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	if greet := c.read(); !strings.HasPrefix(greet.text, "* OK") {
		t.Fatalf("imap: greeting %q, want * OK", greet.text)
	}
	return c
}

// read reads one response, with the literals it carries.
func (c *imapClient) read() imapResp {
	c.t.Helper()
	var resp imapResp
	var text strings.Builder
	for {
		line := c.readLine()
		text.WriteString(line)
		m := literalAnnounce.FindStringSubmatch(line)
		if m == nil {
			resp.text = text.String()
			return resp
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			c.t.Fatalf("imap: literal size in %q: %v", line, err)
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			c.t.Fatalf("imap: reading a %d-byte literal: %v", n, err)
		}
		resp.literals = append(resp.literals, lit)
	}
}

// readLine reads up to CRLF and returns the line without it.
func (c *imapClient) readLine() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(imapHangGuard))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("imap: read: %v (partial line %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("imap: line not ended by CRLF: %q", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func (c *imapClient) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(imapHangGuard))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("imap: write: %v", err)
	}
}

// begin sends a command line under a new tag and returns the tag.
func (c *imapClient) begin(command string) string {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("a%d", c.tag)
	c.write([]byte(tag + " " + command + "\r\n"))
	return tag
}

// finish reads responses up to the tagged one and returns the untagged ones
// and the tagged status ("OK ...", "NO ...", "BAD ...").
func (c *imapClient) finish(tag string) (untagged []imapResp, status string) {
	c.t.Helper()
	for {
		resp := c.read()
		if rest, ok := strings.CutPrefix(resp.text, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, resp)
	}
}

// run sends a command and returns the untagged responses and the status.
func (c *imapClient) run(command string) ([]imapResp, string) {
	c.t.Helper()
	return c.finish(c.begin(command))
}

// ok runs a command and fails the test unless the server answers OK.
func (c *imapClient) ok(format string, args ...any) ([]imapResp, string) {
	c.t.Helper()
	command := fmt.Sprintf(format, args...)
	untagged, status := c.run(command)
	if !strings.HasPrefix(status, "OK") {
		c.t.Fatalf("imap: %s: %s", command, status)
	}
	return untagged, status
}

// continuation reads the server's "+" that invites a literal or IDLE's
// updates, and fails the test on anything else.
func (c *imapClient) continuation(command string) {
	c.t.Helper()
	if resp := c.read(); !strings.HasPrefix(resp.text, "+") {
		c.t.Fatalf("imap: %s: want a continuation, got %q", command, resp.text)
	}
}

// login logs in with LOGIN, as a plain-text client on a trusted link does.
func (c *imapClient) login(user, password string) {
	c.t.Helper()
	c.ok("LOGIN %s %s", imapQuote(user), imapQuote(password))
}

// appendMsg APPENDs msg to mailbox with flags (e.g. `\Seen`, or "") as a
// synchronizing literal and returns the UIDVALIDITY and UID of the APPENDUID
// response (RFC 4315).
func (c *imapClient) appendMsg(mailbox, flags string, msg []byte) (uidValidity, uid uint32) {
	c.t.Helper()
	command := fmt.Sprintf("APPEND %s (%s) {%d}", imapQuote(mailbox), flags, len(msg))
	tag := c.begin(command)
	c.continuation(command)
	c.write(append(append([]byte(nil), msg...), "\r\n"...))
	_, status := c.finish(tag)
	m := regexp.MustCompile(`^OK \[APPENDUID (\d+) (\d+)\]`).FindStringSubmatch(status)
	if m == nil {
		c.t.Fatalf("imap: %s: %s, want OK [APPENDUID ...]", command, status)
	}
	return parseUint32(c.t, m[1]), parseUint32(c.t, m[2])
}

// selectBox SELECTs mailbox and returns its UIDVALIDITY and message count.
func (c *imapClient) selectBox(mailbox string) (uidValidity uint32, exists int) {
	c.t.Helper()
	return c.open("SELECT", mailbox)
}

// examineBox opens mailbox read-only with EXAMINE, which changes nothing
// in it, and returns its UIDVALIDITY and message count.
func (c *imapClient) examineBox(mailbox string) (uidValidity uint32, exists int) {
	c.t.Helper()
	return c.open("EXAMINE", mailbox)
}

func (c *imapClient) open(verb, mailbox string) (uidValidity uint32, exists int) {
	c.t.Helper()
	untagged, _ := c.ok("%s %s", verb, imapQuote(mailbox))
	exists = -1
	for _, r := range untagged {
		if m := regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`).FindStringSubmatch(r.text); m != nil {
			uidValidity = parseUint32(c.t, m[1])
		}
		if m := regexp.MustCompile(`^\* (\d+) EXISTS$`).FindStringSubmatch(r.text); m != nil {
			exists = int(parseUint32(c.t, m[1]))
		}
	}
	if uidValidity == 0 || exists < 0 {
		c.t.Fatalf("imap: %s %s: no UIDVALIDITY or EXISTS in %q", verb, mailbox, texts(untagged))
	}
	return uidValidity, exists
}

// imapMessage is what a FETCH returned for one message.
type imapMessage struct {
	uid   uint32
	flags []string // sorted, without \Recent (which belongs to a session)
	body  []byte   // BODY[] when fetched
}

var (
	fetchLine  = regexp.MustCompile(`^\* \d+ FETCH \(`)
	fetchUID   = regexp.MustCompile(`[( ]UID (\d+)`)
	fetchFlags = regexp.MustCompile(`[( ]FLAGS \(([^)]*)\)`)
)

// fetch runs `UID FETCH set (UID FLAGS [BODY.PEEK[]])` and returns the
// messages by UID.
func (c *imapClient) fetch(set string, body bool) map[uint32]imapMessage {
	c.t.Helper()
	items := "UID FLAGS"
	if body {
		items += " BODY.PEEK[]"
	}
	untagged, _ := c.ok("UID FETCH %s (%s)", set, items)
	msgs := make(map[uint32]imapMessage)
	for _, r := range untagged {
		// A FETCH without UID is news of another session's flag change
		// (RFC 3501 7.4.2), not an answer to this command.
		if !fetchLine.MatchString(r.text) || !fetchUID.MatchString(r.text) {
			continue
		}
		msg := parseFetch(c.t, r)
		if body && len(r.literals) != 1 {
			c.t.Fatalf("imap: FETCH response %q carries %d literals, want the body", r.text, len(r.literals))
		}
		if body {
			msg.body = r.literals[0]
		}
		msgs[msg.uid] = msg
	}
	return msgs
}

func parseFetch(t testing.TB, r imapResp) imapMessage {
	t.Helper()
	u := fetchUID.FindStringSubmatch(r.text)
	f := fetchFlags.FindStringSubmatch(r.text)
	if u == nil || f == nil {
		t.Fatalf("imap: FETCH response without UID or FLAGS: %q", r.text)
	}
	return imapMessage{uid: parseUint32(t, u[1]), flags: normalFlags(f[1])}
}

// normalFlags sorts a FLAGS list and drops \Recent.
func normalFlags(list string) []string {
	var flags []string
	for _, f := range strings.Fields(list) {
		if f != `\Recent` {
			flags = append(flags, f)
		}
	}
	slices.Sort(flags)
	return flags
}

// copyUID parses the COPYUID code (RFC 4315) of a COPY or MOVE: the
// destination's UIDVALIDITY and the UID a single copied message got there.
func copyUID(t testing.TB, text string) (uidValidity, uid uint32, ok bool) {
	t.Helper()
	m := regexp.MustCompile(`\[COPYUID (\d+) \d+ (\d+)\]`).FindStringSubmatch(text)
	if m == nil {
		return 0, 0, false
	}
	return parseUint32(t, m[1]), parseUint32(t, m[2]), true
}

// listMailboxes runs LIST "" "*" and returns the names of the mailboxes
// that exist, leaving out a parent that is only a name in the hierarchy
// ("Lists" of "Lists.golang", flagged \NonExistent or \Noselect).
func (c *imapClient) listMailboxes() []string {
	c.t.Helper()
	untagged, _ := c.ok(`LIST "" "*"`)
	re := regexp.MustCompile(`^\* LIST \(([^)]*)\) (?:"[^"]*"|NIL) (.+)$`)
	var names []string
	for _, r := range untagged {
		m := re.FindStringSubmatch(r.text)
		if m == nil || strings.Contains(m[1], `\NonExistent`) || strings.Contains(m[1], `\Noselect`) {
			continue
		}
		names = append(names, strings.Trim(m[2], `"`))
	}
	slices.Sort(names)
	return names
}

// imapQuote makes s a quoted string; the names and passwords of these
// tests have no quotes or backslashes, so none are escaped.
func imapQuote(s string) string { return `"` + s + `"` }

// crlf turns a message with Unix line ends into IMAP's CRLF form.
func crlf(msg []byte) []byte { return bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n")) }

func parseUint32(t testing.TB, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("imap: number %q: %v", s, err)
	}
	return uint32(n)
}

func texts(rs []imapResp) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

// waitFor reads responses until one reads exactly want, as a client in
// IDLE waits for the server's news; the hang guard bounds the wait.
func (c *imapClient) waitFor(want string) {
	c.t.Helper()
	for {
		if resp := c.read(); resp.text == want {
			return
		}
	}
}

// hasResponse reports whether one of the responses reads exactly want.
func hasResponse(rs []imapResp, want string) bool {
	for _, r := range rs {
		if r.text == want {
			return true
		}
	}
	return false
}
