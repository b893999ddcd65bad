// Package fs presents a packdir store as Maildir++ trees over FUSE.
//
// Every inode of the store is one node type (node.go); directory
// operations are in node_dir_ops.go, opening and creating files in
// node_open.go, and open files in file.go (spooled, writable files) and
// message.go (sealed messages, immutable and cached by the kernel).
//
// Glossary, beyond package backend's:
//
//   - Message directory: a directory named "new" or "cur". A spooled file
//     that is renamed or linked into one is committed (sealed) first, and
//     the call returns once that is durable: Maildir delivery.
//   - Side file: any file outside new/ and cur/ (dovecot-uidlist,
//     subscriptions, tmp/ files). It stays spooled and fully writable.
//   - Writer: an open file handle with write access. A file with writers is
//     never committed under them; it is committed when the last one closes.
package fs
