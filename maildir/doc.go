// Package maildir parses the file names of Maildir messages, as the
// Maildir specification (cr.yp.to/proto/maildir.html) and its Maildir++
// extension define them. It knows names only: no files, no packdir store.
//
// Glossary:
//
//	unique part   what precedes the info separator ':'; unique per folder,
//	              e.g. "1030019783.M20P7.host,S=2841,W=2900"
//	info          what follows the separator; "2," then the flags is the
//	              only meaning the specification defines
//	flags         single letters in ASCII order: D (draft), F (flagged),
//	              P (passed), R (replied), S (seen), T (trashed); Dovecot
//	              stores IMAP keywords as lowercase letters a-z
//	S= and W=     Maildir++ fields of the unique part: the message size in
//	              bytes, and its size with CRLF line ends (RFC822.SIZE)
package maildir
