package backend

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The index (index.db) is a bbolt view of the journal in the containers.
// FORMAT.md is the authoritative description; in short:
//
//	meta       "format"                  u32 index format (IndexFormat)
//	meta       "applied"                 u64 seq, u32 container, u64 end offset
//	meta       "next_ino"                u64
//	meta       "active"                  u32 active container number
//	meta       "rebuild"                 u64 begin, u64 end seq of a rebuild's checkpoint (while rebuilding)
//	meta       "dirhash"                 16-byte key of the name hash (the store id)
//	users      name                      u64 ino, u32 uid, u32 gid
//	inodes     u64 ino (BE)              inode record (see encodeInode)
//	dirents    u64 parent (BE) + u64 cookie (BE) + name   u64 ino, u32 mode
//	payloads   [32]byte payload key      u32 container, u64 offset, u64 length, u32 refs
//	containers u32 number (BE)           u64 written, u64 live, u8 state (0 active, 1 sealed, 2 deleted)
//	usage      u32 uid (BE)              u64 bytes, u64 messages (sealed messages the uid owns)
//	quotas     u32 uid (BE)              u64 bytes, u64 messages (limits; 0 none)
var (
	bucketMeta       = []byte("meta")
	bucketUsers      = []byte("users")
	bucketInodes     = []byte("inodes")
	bucketDirents    = []byte("dirents")
	bucketPayloads   = []byte("payloads")
	bucketContainers = []byte("containers")

	keyFormat  = []byte("format")
	keyApplied = []byte("applied")
	keyNextIno = []byte("next_ino")
	keyActive  = []byte("active")
	keyDirHash = []byte("dirhash")

	allBuckets = [][]byte{bucketMeta, bucketUsers, bucketInodes, bucketDirents, bucketPayloads, bucketContainers, bucketUsage, bucketQuotas}
)

// Mode bits, as in stat(2). Defined here so that backend needs no syscall.
const (
	ModeType    uint32 = 0o170000
	ModeDir     uint32 = 0o040000
	ModeRegular uint32 = 0o100000
	ModeSymlink uint32 = 0o120000
	ModePerm    uint32 = 0o7777
)

// RootIno is the inode of the store root; users' trees are its children.
const RootIno uint64 = 1

// MaxNameLen is the longest name in a directory, as on ext4.
const MaxNameLen = 255

// inode is the index's record of one inode.
type inode struct {
	Mode    uint32
	UID     uint32
	GID     uint32
	Nlink   uint32 // names of a file; unused for directories
	Subdirs uint32 // child directories of a directory
	Atime   int64
	Mtime   int64
	Ctime   int64
	Size    uint64 // exact for sealed files and symlinks
	Parent  uint64 // directories only: the one directory holding it
	Payload [32]byte
	Target  string // symlinks only
}

func (n *inode) isDir() bool      { return n.Mode&ModeType == ModeDir }
func (n *inode) isFile() bool     { return n.Mode&ModeType == ModeRegular }
func (n *inode) sealed() bool     { return n.Payload != [32]byte{} }
func (n *inode) spooled() bool    { return n.isFile() && !n.sealed() }
func (n *inode) setTimes(t int64) { n.Mtime, n.Ctime = t, t }

const inodeFixedLen = 4*5 + 8*3 + 8 + 8 + 32 + 2

func encodeInode(n *inode) []byte {
	b := make([]byte, 0, inodeFixedLen+len(n.Target))
	b = binary.LittleEndian.AppendUint32(b, n.Mode)
	b = binary.LittleEndian.AppendUint32(b, n.UID)
	b = binary.LittleEndian.AppendUint32(b, n.GID)
	b = binary.LittleEndian.AppendUint32(b, n.Nlink)
	b = binary.LittleEndian.AppendUint32(b, n.Subdirs)
	b = binary.LittleEndian.AppendUint64(b, uint64(n.Atime))
	b = binary.LittleEndian.AppendUint64(b, uint64(n.Mtime))
	b = binary.LittleEndian.AppendUint64(b, uint64(n.Ctime))
	b = binary.LittleEndian.AppendUint64(b, n.Size)
	b = binary.LittleEndian.AppendUint64(b, n.Parent)
	b = append(b, n.Payload[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(n.Target)))
	return append(b, n.Target...)
}

func decodeInode(b []byte) (*inode, error) {
	if len(b) < inodeFixedLen {
		return nil, &IndexError{Reason: fmt.Sprintf("inode record of %d bytes", len(b))}
	}
	le := binary.LittleEndian
	n := &inode{
		Mode: le.Uint32(b[0:]), UID: le.Uint32(b[4:]), GID: le.Uint32(b[8:]),
		Nlink: le.Uint32(b[12:]), Subdirs: le.Uint32(b[16:]),
		Atime: int64(le.Uint64(b[20:])), Mtime: int64(le.Uint64(b[28:])), Ctime: int64(le.Uint64(b[36:])),
		Size: le.Uint64(b[44:]), Parent: le.Uint64(b[52:]),
	}
	copy(n.Payload[:], b[60:92])
	tl := int(le.Uint16(b[92:]))
	if len(b) != inodeFixedLen+tl {
		return nil, &IndexError{Reason: "inode record length does not match its symlink target"}
	}
	n.Target = string(b[inodeFixedLen:])
	return n, nil
}

func inoKey(ino uint64) []byte { return binary.BigEndian.AppendUint64(nil, ino) }

// IndexFormat is the layout of index.db this code reads and writes.
// Format 1 keyed dirents by parent and name; format 2 puts the name's
// cookie between them (migrateIndex converts).
const IndexFormat = 2

// Directory offsets. An entry's cookie is where it sorts in its directory
// and the offset a listing reports for it, to resume after it: a hash of
// its name, so that it stays the same while other entries come and go,
// as ext4's htree offsets do. 0, 1 and 2 are not cookies: they are left
// for the start of a listing, "." and "..".
const (
	MinCookie uint64 = 3
	MaxCookie uint64 = 1<<63 - 1 // d_off is signed: 63 bits
)

// nameCookie is name's cookie in an index whose name hash has key: the
// first 63 bits of SHA-256(key, name). The key (the store id) keeps a
// set of names that collide from colliding in every store.
func nameCookie(key []byte, name string) uint64 {
	buf := make([]byte, 0, 16+MaxNameLen)
	sum := sha256.Sum256(append(append(buf, key...), name...))
	return max(binary.BigEndian.Uint64(sum[:])>>1, MinCookie)
}

func direntKey(parent, cookie uint64, name string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, direntKeyLen+len(name)), parent)
	return append(binary.BigEndian.AppendUint64(k, cookie), name...)
}

// direntKeyLen is the length of a dirents key before the name.
const direntKeyLen = 16

// direntCookie and direntName take a dirents key apart; checkDirents
// reports keys too short to hold a parent and a cookie.
func direntCookie(k []byte) uint64 {
	if len(k) < direntKeyLen {
		return 0
	}
	return binary.BigEndian.Uint64(k[8:])
}

func direntName(k []byte) string {
	if len(k) < direntKeyLen {
		return ""
	}
	return string(k[direntKeyLen:])
}

// dirent is a directory entry's value: which inode, and its type bits so
// that readdir needs no inode read.
type dirent struct {
	Ino  uint64
	Mode uint32
}

func encodeDirent(d dirent) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 12), d.Ino)
	return binary.LittleEndian.AppendUint32(b, d.Mode)
}

func decodeDirent(b []byte) (dirent, error) {
	if len(b) != 12 {
		return dirent{}, &IndexError{Reason: fmt.Sprintf("dirent of %d bytes", len(b))}
	}
	return dirent{Ino: binary.LittleEndian.Uint64(b), Mode: binary.LittleEndian.Uint32(b[8:])}, nil
}

// payloadLoc is where a payload's record is and how many inodes hold it.
type payloadLoc struct {
	Container uint32
	Offset    int64  // of the record
	Length    uint64 // of the message bytes
	Refs      uint32
}

func encodePayload(p payloadLoc) []byte {
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, 24), p.Container)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Offset))
	b = binary.LittleEndian.AppendUint64(b, p.Length)
	return binary.LittleEndian.AppendUint32(b, p.Refs)
}

func decodePayload(b []byte) (payloadLoc, error) {
	if len(b) != 24 {
		return payloadLoc{}, &IndexError{Reason: fmt.Sprintf("payload entry of %d bytes", len(b))}
	}
	le := binary.LittleEndian
	return payloadLoc{Container: le.Uint32(b), Offset: int64(le.Uint64(b[4:])), Length: le.Uint64(b[12:]), Refs: le.Uint32(b[20:])}, nil
}

// containerInfo is the index's accounting of one container.
type containerInfo struct {
	Written uint64 // bytes, header included
	Live    uint64 // bytes of payload records some inode still holds
	Sealed  bool
	// Deleted marks a container that compaction has emptied: nothing in
	// the index points into it and its file is (being) deleted. The entry
	// stays as a tombstone so that Open finishes an interrupted deletion
	// and fsck can tell a leftover file from a lost one.
	Deleted bool
}

// Values of a container entry's state byte.
const (
	containerActive  = 0
	containerSealed  = 1
	containerDeleted = 2
)

func encodeContainerInfo(c containerInfo) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 17), c.Written)
	b = binary.LittleEndian.AppendUint64(b, c.Live)
	switch {
	case c.Deleted:
		return append(b, containerDeleted)
	case c.Sealed:
		return append(b, containerSealed)
	}
	return append(b, containerActive)
}

func decodeContainerInfo(b []byte) (containerInfo, error) {
	if len(b) != 17 || b[16] > containerDeleted {
		return containerInfo{}, &IndexError{Reason: fmt.Sprintf("container entry of %d bytes", len(b))}
	}
	return containerInfo{Written: binary.LittleEndian.Uint64(b), Live: binary.LittleEndian.Uint64(b[8:]),
		Sealed: b[16] != containerActive, Deleted: b[16] == containerDeleted}, nil
}

func containerKey(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// ix wraps a bbolt transaction with typed accessors for the schema above.
type ix struct{ tx *bolt.Tx }

func (x ix) inode(ino uint64) (*inode, error) {
	v := x.tx.Bucket(bucketInodes).Get(inoKey(ino))
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeInode(v)
}

// Leaf pages of the inodes bucket are filled before they split, not
// split half full (bbolt's default): inode numbers only grow, so almost
// every new key lands on the last page, and a page split in half would
// stay half empty. At half fill the index was twice the size, and so was
// what a scan of a large folder reads and maps. Dirents land anywhere in
// their directory (they sort by cookie, a hash): see direntsFill.
const inodesFill = 1.0

// direntsFill is how full bbolt fills the first of the pages it splits a
// dirents leaf into: half, bbolt's default. Entries sort by cookie, so a
// new one lands at a random place and every leaf takes inserts: a leaf
// split 90/10 gets the next insert in its 90% page nine times in ten and
// splits again, leaving a trail of 10% pages, while two halves both have
// room, which random inserts fill to about ln 2 (the classic B-tree
// result). 6,000 deliveries into cur/, one transaction each, left the
// leaves 69% full at 0.5, 64% at 0.7, 55% at 0.8, 39% at 0.9 (the old
// setting, for names that landed at the end) and 23% at 1.0. A listing
// reads the leaves in order, so their fill is what a scan pays.
const direntsFill = 0.5

func (x ix) putInode(ino uint64, n *inode) error {
	b := x.tx.Bucket(bucketInodes)
	b.FillPercent = inodesFill
	return b.Put(inoKey(ino), encodeInode(n))
}

func (x ix) deleteInode(ino uint64) error { return x.tx.Bucket(bucketInodes).Delete(inoKey(ino)) }

// dirHashKey is the key of the index's name hash.
func (x ix) dirHashKey() []byte { return x.tx.Bucket(bucketMeta).Get(keyDirHash) }

// cookie is name's cookie in this index.
func (x ix) cookie(name string) uint64 { return nameCookie(x.dirHashKey(), name) }

func (x ix) direntKey(parent uint64, name string) []byte {
	return direntKey(parent, x.cookie(name), name)
}

func (x ix) dirent(parent uint64, name string) (dirent, bool, error) {
	v := x.tx.Bucket(bucketDirents).Get(x.direntKey(parent, name))
	if v == nil {
		return dirent{}, false, nil
	}
	d, err := decodeDirent(v)
	return d, err == nil, err
}

func (x ix) putDirent(parent uint64, name string, d dirent) error {
	b := x.tx.Bucket(bucketDirents)
	b.FillPercent = direntsFill
	return b.Put(x.direntKey(parent, name), encodeDirent(d))
}

func (x ix) deleteDirent(parent uint64, name string) error {
	return x.tx.Bucket(bucketDirents).Delete(x.direntKey(parent, name))
}

// dirEmpty reports whether directory ino has no entries.
func (x ix) dirEmpty(ino uint64) bool {
	prefix := inoKey(ino)
	k, _ := x.tx.Bucket(bucketDirents).Cursor().Seek(prefix)
	return k == nil || !bytes.HasPrefix(k, prefix)
}

func (x ix) payload(sum [32]byte) (payloadLoc, bool, error) {
	v := x.tx.Bucket(bucketPayloads).Get(sum[:])
	if v == nil {
		return payloadLoc{}, false, nil
	}
	p, err := decodePayload(v)
	return p, err == nil, err
}

func (x ix) putPayload(sum [32]byte, p payloadLoc) error {
	return x.tx.Bucket(bucketPayloads).Put(sum[:], encodePayload(p))
}

func (x ix) container(n uint32) (containerInfo, error) {
	v := x.tx.Bucket(bucketContainers).Get(containerKey(n))
	if v == nil {
		return containerInfo{}, nil
	}
	return decodeContainerInfo(v)
}

func (x ix) putContainer(n uint32, c containerInfo) error {
	return x.tx.Bucket(bucketContainers).Put(containerKey(n), encodeContainerInfo(c))
}

func (x ix) metaUint64(key []byte) uint64 {
	v := x.tx.Bucket(bucketMeta).Get(key)
	if len(v) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(v)
}

func (x ix) putMetaUint64(key []byte, v uint64) error {
	return x.tx.Bucket(bucketMeta).Put(key, binary.LittleEndian.AppendUint64(nil, v))
}

// journalPos is a position in the journal: the last applied record.
type journalPos struct {
	Seq       uint64
	Container uint32
	End       int64 // offset just past the record
}

func (x ix) applied() journalPos {
	v := x.tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 20 {
		return journalPos{}
	}
	le := binary.LittleEndian
	return journalPos{Seq: le.Uint64(v), Container: le.Uint32(v[8:]), End: int64(le.Uint64(v[12:]))}
}

func (x ix) putApplied(p journalPos) error {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 20), p.Seq)
	b = binary.LittleEndian.AppendUint32(b, p.Container)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.End))
	return x.tx.Bucket(bucketMeta).Put(keyApplied, b)
}

// user is the index's record of one user.
type userRec struct {
	Ino      uint64
	UID, GID uint32
}

func encodeUser(u userRec) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), u.Ino)
	b = binary.LittleEndian.AppendUint32(b, u.UID)
	return binary.LittleEndian.AppendUint32(b, u.GID)
}

func decodeUser(b []byte) (userRec, error) {
	if len(b) != 16 {
		return userRec{}, &IndexError{Reason: fmt.Sprintf("user record of %d bytes", len(b))}
	}
	le := binary.LittleEndian
	return userRec{Ino: le.Uint64(b), UID: le.Uint32(b[8:]), GID: le.Uint32(b[12:])}, nil
}

// initIndex creates the buckets and, in a new index, the implicit root
// directory, with the store id as the key of the name hash.
func initIndex(tx *bolt.Tx, storeID [16]byte) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	x := ix{tx}
	if _, err := x.inode(RootIno); err == nil {
		return nil
	}
	if err := x.putFormat(IndexFormat); err != nil {
		return err
	}
	if err := x.tx.Bucket(bucketMeta).Put(keyDirHash, storeID[:]); err != nil {
		return err
	}
	if err := x.putMetaUint64(keyNextIno, RootIno+1); err != nil {
		return err
	}
	return x.putInode(RootIno, &inode{Mode: ModeDir | 0o755, Parent: RootIno})
}

// format is the index's format, 1 if it says none (the first index
// format wrote one, but a 0 is no layout this code knows either).
func (x ix) format() uint32 {
	v := x.tx.Bucket(bucketMeta).Get(keyFormat)
	if len(v) != 4 {
		return 1
	}
	return binary.LittleEndian.Uint32(v)
}

func (x ix) putFormat(f uint32) error {
	return x.tx.Bucket(bucketMeta).Put(keyFormat, binary.LittleEndian.AppendUint32(nil, f))
}
