// Package fs presents a packdir store as Maildir++ trees over FUSE.
//
// Every inode of the store is one node type (node.go); directory
// operations are in node_dir_ops.go, opening and creating files in
// node_open.go (files have no handles), reading and writing them in
// node_io.go, and message.go keeps the verified bytes of the sealed
// messages being read.
//
// Glossary, beyond package backend's:
//
//   - Message directory: a directory named "new" or "cur". A spooled file
//     that is renamed or linked into one is committed (sealed) first, and
//     the call returns once that is durable: Maildir delivery.
//   - Side file: any file outside new/ and cur/ (dovecot-uidlist,
//     subscriptions, tmp/ files). It stays spooled and fully writable.
//   - Written in place: a file created or changed in new/ or cur/ rather
//     than delivered there. It is committed once it has gone unchanged for
//     a second (commitIdle).
package fs
