// Package backend is packdir's mail store: users, directories, names,
// messages and bytes, kept in append-only containers and indexed by bbolt.
// It knows nothing of FUSE or POSIX system calls; package fs translates.
//
// Glossary:
//
//   - Store: a directory holding store.json, index.db, containers/ and spool/.
//   - Container: an append-only file of framed records (backend/record). The
//     active container is the one records are appended to; a full one is
//     sealed and never written again.
//   - Payload: the bytes of a message, stored once and named by their key:
//     their SHA-256 (single-instance storage across the store), or, in a
//     store whose de-duplication scope is "user", a hash of that and the
//     owning uid, so that only one uid's copies share a payload.
//   - Op: a journaled namespace change (create, link, unlink, rename, setattr,
//     commit, spool). The index is the result of applying every op in
//     sequence; apply.go holds the one function that does so, for live
//     changes, crash replay and rebuild alike.
//   - Inode: a directory, a symlink, or a file. A file is either sealed (its
//     bytes are a payload in a container, immutable) or spooled (its bytes
//     are a private file in spool/, fully writable).
//   - Commit: turning a spooled file into a sealed message.
//   - Spool (verb): copy-on-write of a sealed message back into a spool file
//     so that it can be changed.
//   - Durable: the op's record is fsynced in its container. Sync waits for
//     that; concurrent waiters share one fsync (group commit).
package backend
