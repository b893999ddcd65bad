// Command packdir mounts a packed mail store as Maildir++ trees and
// administers stores: init, user, fsck, stats.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/packdir/packdir/backend"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "packdir: "+oneLine(err))
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for a command line that makes no sense, 1 otherwise.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func oneLine(err error) string {
	msg := err.Error()
	for i, c := range msg {
		if c == '\n' {
			return msg[:i]
		}
	}
	return msg
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "packdir",
		Usage: "a packed mail store that any Maildir program can use",
		Description: "packdir keeps mail in a few large append-only containers indexed by bbolt,\n" +
			"and mounts them with FUSE as ordinary Maildir++ trees.\n\n" +
			"Examples:\n" +
			"   packdir mount --user alice /var/lib/packdir /home/alice/Maildir\n" +
			"   packdir fsck /var/lib/packdir\n" +
			"   packdir stats --json /var/lib/packdir",
		HideHelpCommand: true,
		OnUsageError:    onUsageError,
		Action:          unknownCommand,
		Commands: []*cli.Command{
			mountCommand(), initCommand(), userCommand(), fsckCommand(), statsCommand(), compactCommand(),
		},
	}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef("%v (see 'packdir %s --help')", err, cmdName(c))
}

// cmdName is the command's whole name after "packdir", "user add" for a
// subcommand: FullName is only the last word there.
func cmdName(c *cli.Context) string {
	if name := strings.TrimPrefix(c.Command.HelpName, c.App.Name+" "); name != "" {
		return name
	}
	return c.Command.Name
}

// unknownCommand runs when no subcommand matched: a bare command shows its
// help, anything else is a usage error (urfave/cli would print "No help
// topic" and exit 3).
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return usagef("no command %q (see '%s --help')", c.Args().First(), c.Command.HelpName)
}

// args checks that c has exactly the positional arguments named.
func args(c *cli.Context, names ...string) ([]string, error) {
	if c.NArg() != len(names) {
		return nil, usagef("%s needs %d arguments (%v), got %d (see 'packdir %s --help')",
			cmdName(c), len(names), names, c.NArg(), cmdName(c))
	}
	return c.Args().Slice(), nil
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openStore opens an existing store for an administrative command.
func openStore(dir string) (*backend.Store, error) {
	return openStoreWith(dir, backend.Options{Logger: logger()})
}

func openStoreWith(dir string, opts backend.Options) (*backend.Store, error) {
	if !backend.Exists(dir) {
		return nil, notAStore(dir)
	}
	s, err := backend.Open(dir, opts)
	if errors.Is(err, backend.ErrInUse) {
		return nil, fmt.Errorf("store %s is in use by a running packdir; unmount it first", dir)
	}
	return s, err
}

// notAStore explains why dir, which has no store.json, is no store. No
// command creates a store but init: a mistyped path given to mount became
// a new, empty mailbox, and a Maildir given in the store's place got the
// store's files written among its own. So the hint to run init is given
// only where init would do what was meant: for a new or empty directory.
func notAStore(dir string) error {
	if err := backend.LostConfig(dir); err != nil {
		return err
	}
	names, err := dirNames(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s is not a packdir store: it does not exist (create one with 'packdir init %s')", dir, dir)
	case err != nil:
		return fmt.Errorf("%s is not a packdir store: %w", dir, err)
	case len(names) == 0:
		return fmt.Errorf("%s is not a packdir store: it is empty (create one with 'packdir init %s')", dir, dir)
	}
	return fmt.Errorf("%s is not a packdir store: it holds other files (%s) and no store.json; check the arguments", dir, sample(names))
}

// errNotDir is dirNames's error for a path that is no directory; it reads
// better than readdirent's.
var errNotDir = errors.New("not a directory")

// dirNames lists directory dir, leaving out lost+found: the root of a new
// ext4 file system given whole to a store, or to a mount, holds it and
// counts as empty.
func dirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, errNotDir
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return slices.DeleteFunc(names, func(n string) bool { return n == "lost+found" }), nil
}

// sample names the first few of names, for an error message.
func sample(names []string) string {
	const most = 3
	if len(names) <= most {
		return strings.Join(quoteAll(names), ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(quoteAll(names[:most]), ", "), len(names)-most)
}

// displayName is a name (a folder's, a user's, a file's) as text output
// prints it: as it is if every character is printable, spaces included,
// else quoted as a Go string. A newline in a folder name, made through
// the mount by anyone, would otherwise print as a line of its own that
// looks like packdir's, and a tab or an escape sequence would shift
// columns or drive the terminal. A name that starts with a quote is
// quoted too, so that a quoted name always means an escaped one.
func displayName(name string) string {
	if strings.HasPrefix(name, `"`) {
		return strconv.Quote(name)
	}
	for _, r := range name {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(name)
		}
	}
	return name
}

// escapeControl is a line of text output that embeds names (fsck's
// problems name messages by path): each character that is not printable
// is written as its Go escape, so that no name breaks the line or drives
// the terminal.
func escapeControl(line string) string {
	var b strings.Builder
	for i, r := range line {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(line[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, line[i]) // a byte that is no UTF-8
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = displayName(n)
	}
	return out
}
