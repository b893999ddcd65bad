// Package record is the container codec: it encodes and decodes the bytes of
// packdir's container files exactly as FORMAT.md specifies them, and nothing
// more. It knows records and their bodies, not stores, indexes or files on
// disk; backend opens, appends to and truncates containers.
//
// Every length read from disk is checked against the bytes actually present
// and against the caller's limit before it is used, so that damaged or
// hostile bytes give an error, never a panic or a huge allocation.
//
// Glossary:
//
//   - Container: an append-only file: a 40-byte header (ContainerHeader)
//     followed by records, each starting on an 8-byte boundary.
//   - Record: one framed unit in a container: a 24-byte header (magic, type,
//     flags, sequence number, body length, CRC), the body, and zero padding
//     up to the next multiple of 8.
//   - Sequence number (Seq): global to the store and strictly increasing
//     across containers; it orders the journal.
//   - Payload: a record whose body is the message's key (PayloadKey: its
//     SHA-256, or with FlagOwner a hash of that and the owner's uid, which
//     follows the key) and then the message bytes. The key is the message's
//     identity in the store.
//   - Op: a record whose body is one namespace operation (Op); replaying all
//     ops in sequence order rebuilds the index.
//   - Seal: the last record of a full container: its record count and last
//     sequence number. Nothing follows it.
//   - Torn tail: a record cut short by a crash at the end of the active
//     container; Decode and Scanner report it as ErrShort so that recovery
//     can tell it from corruption (*FormatError).
package record
