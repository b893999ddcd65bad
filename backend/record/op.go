package record

import (
	"encoding/binary"
	"fmt"
	"math"
)

// OpCode is the first byte of an op record body: which operation it is.
type OpCode uint8

// Op codes; FORMAT.md "Operation records" gives each one's fields.
const (
	OpUser    OpCode = 1
	OpCreate  OpCode = 2
	OpLink    OpCode = 3
	OpUnlink  OpCode = 4
	OpRename  OpCode = 5
	OpSetattr OpCode = 6
	OpCommit  OpCode = 7
	OpSpool   OpCode = 8
	OpSymlink OpCode = 9
	OpQuota   OpCode = 10

	// Checkpoint ops: absolute state written by compaction, so that the
	// containers it deletes are no longer needed to rebuild the index.
	// Only a rebuild reads them; replay after a crash skips them.
	OpCkptBegin OpCode = 32
	OpCkptInode OpCode = 33
	OpCkptEntry OpCode = 34
	OpCkptUser  OpCode = 35
	OpCkptQuota OpCode = 36
	OpCkptEnd   OpCode = 37
)

var opNames = [...]string{
	OpUser: "user", OpCreate: "create", OpLink: "link", OpUnlink: "unlink",
	OpRename: "rename", OpSetattr: "setattr", OpCommit: "commit",
	OpSpool: "spool", OpSymlink: "symlink", OpQuota: "quota",
	OpCkptBegin: "ckpt-begin", OpCkptInode: "ckpt-inode", OpCkptEntry: "ckpt-entry",
	OpCkptUser: "ckpt-user", OpCkptQuota: "ckpt-quota", OpCkptEnd: "ckpt-end",
}

func (c OpCode) String() string {
	if c.known() {
		return opNames[c]
	}
	return fmt.Sprintf("OpCode(%d)", uint8(c))
}

func (c OpCode) known() bool { return int(c) < len(opFields) && opFields[c] != nil }

// Checkpoint reports whether c is one of the checkpoint ops.
func (c OpCode) Checkpoint() bool { return c >= OpCkptBegin && c <= OpCkptEnd }

// Setattr mask bits (Op.Mask): which attributes a setattr op sets.
const (
	SetMode  = 1
	SetUID   = 2
	SetGID   = 4
	SetAtime = 8
	SetMtime = 16
	SetSize  = 32 // spool files only

	setMaskAll = SetMode | SetUID | SetGID | SetAtime | SetMtime | SetSize
)

// Rename flags (Op.Flags of a rename op).
const (
	RenameReplace   = 0 // replace the target if it exists
	RenameNoReplace = 1 // fail if the target exists
	RenameExchange  = 2 // swap source and target

	renameFlagsMax = RenameExchange
)

// Op is one namespace operation, the body of an op record. Only the fields
// that its Code uses are encoded; the others are zero after ParseOp.
type Op struct {
	Code      OpCode
	Time      int64  // Unix ns: the mtime/ctime the op gives to what it changes
	Name      string // user name (OpUser) or entry name
	Parent    uint64
	Ino       uint64
	NewParent uint64
	NewName   string
	Mode      uint32 // file type and permission bits
	UID       uint32
	GID       uint32
	Flags     uint32 // rename flags
	Mask      uint32 // setattr mask
	Atime     int64
	Mtime     int64
	Size      uint64
	Hash      [32]byte // payload SHA-256 (OpCommit)
	Target    string   // symlink target
	Nlink     uint32   // ckpt-inode: names of a file
	Subdirs   uint32   // ckpt-inode: child directories of a directory
	Seq       uint64   // ckpt-end: sequence number of its ckpt-begin
	Count     uint64   // quota: messages; ckpt-end: records of the checkpoint
}

// field names one encoded field of an op; opFields lists them per code in
// the order of FORMAT.md's table, which both AppendOp and ParseOp follow.
type field uint8

const (
	fName field = iota
	fParent
	fIno
	fNewParent
	fNewName
	fMode
	fUID
	fGID
	fFlags
	fMask
	fAtime
	fMtime
	fSize
	fHash
	fTarget
	fNlink
	fSubdirs
	fSeq
	fCount
)

var fieldNames = [...]string{
	fName: "name", fParent: "parent", fIno: "ino", fNewParent: "newparent",
	fNewName: "newname", fMode: "mode", fUID: "uid", fGID: "gid",
	fFlags: "flags", fMask: "mask", fAtime: "atime", fMtime: "mtime",
	fSize: "size", fHash: "hash", fTarget: "target",
	fNlink: "nlink", fSubdirs: "subdirs", fSeq: "seq", fCount: "count",
}

var opFields = [...][]field{
	OpUser:    {fName, fIno, fUID, fGID},
	OpCreate:  {fParent, fName, fIno, fMode, fUID, fGID},
	OpLink:    {fParent, fName, fIno},
	OpUnlink:  {fParent, fName},
	OpRename:  {fParent, fName, fNewParent, fNewName, fFlags},
	OpSetattr: {fIno, fMask, fMode, fUID, fGID, fAtime, fMtime, fSize},
	OpCommit:  {fIno, fHash, fSize, fMtime},
	OpSpool:   {fIno},
	OpSymlink: {fParent, fName, fIno, fTarget, fUID, fGID},
	OpQuota:   {fUID, fSize, fCount},

	OpCkptBegin: {fIno},
	OpCkptInode: {fIno, fMode, fUID, fGID, fNlink, fSubdirs, fAtime, fMtime, fSize, fParent, fHash, fTarget},
	OpCkptEntry: {fParent, fName, fIno, fMode},
	OpCkptUser:  {fName, fIno, fUID, fGID},
	OpCkptQuota: {fUID, fSize, fCount},
	OpCkptEnd:   {fSeq, fCount},
}

// opHeaderSize is the op code byte plus the 8-byte time.
const opHeaderSize = 9

// AppendOp appends the encoding of op (code, time, then only the fields its
// code uses, in FORMAT.md order) to dst. It panics on an unknown code or a
// string longer than 65535 bytes: callers validate names long before.
func AppendOp(dst []byte, op *Op) []byte {
	if !op.Code.known() {
		panic("record: AppendOp: unknown op code " + op.Code.String())
	}
	dst = append(dst, byte(op.Code))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(op.Time))
	for _, f := range opFields[op.Code] {
		dst = appendField(dst, op, f)
	}
	return dst
}

func appendField(dst []byte, op *Op, f field) []byte {
	le := binary.LittleEndian
	switch f {
	case fName:
		return appendString(dst, op.Name)
	case fParent:
		return le.AppendUint64(dst, op.Parent)
	case fIno:
		return le.AppendUint64(dst, op.Ino)
	case fNewParent:
		return le.AppendUint64(dst, op.NewParent)
	case fNewName:
		return appendString(dst, op.NewName)
	case fMode:
		return le.AppendUint32(dst, op.Mode)
	case fUID:
		return le.AppendUint32(dst, op.UID)
	case fGID:
		return le.AppendUint32(dst, op.GID)
	case fFlags:
		return le.AppendUint32(dst, op.Flags)
	case fMask:
		return le.AppendUint32(dst, op.Mask)
	case fAtime:
		return le.AppendUint64(dst, uint64(op.Atime))
	case fMtime:
		return le.AppendUint64(dst, uint64(op.Mtime))
	case fSize:
		return le.AppendUint64(dst, op.Size)
	case fHash:
		return append(dst, op.Hash[:]...)
	case fTarget:
		return appendString(dst, op.Target)
	case fNlink:
		return le.AppendUint32(dst, op.Nlink)
	case fSubdirs:
		return le.AppendUint32(dst, op.Subdirs)
	case fSeq:
		return le.AppendUint64(dst, op.Seq)
	case fCount:
		return le.AppendUint64(dst, op.Count)
	}
	panic("record: appendField: unknown field")
}

func appendString(dst []byte, s string) []byte {
	if len(s) > math.MaxUint16 {
		panic(fmt.Sprintf("record: string of %d bytes is too long for an op", len(s)))
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// ParseOp decodes an op record body. Every length is checked against the
// bytes left; a truncated field, trailing bytes, an unknown code, unknown
// rename flags or setattr mask bits give a *FormatError. Strings are copied,
// so the Op does not alias body.
func ParseOp(body []byte) (Op, error) {
	if len(body) < opHeaderSize {
		return Op{}, formatErrorf("op body of %d bytes is too short", len(body))
	}
	op := Op{Code: OpCode(body[0]), Time: int64(binary.LittleEndian.Uint64(body[1:9]))}
	if !op.Code.known() {
		return Op{}, formatErrorf("unknown op code %d", body[0])
	}
	d := decoder{b: body[opHeaderSize:]}
	for _, f := range opFields[op.Code] {
		if !d.field(&op, f) {
			return Op{}, formatErrorf("op %s: body ends inside %s", op.Code, fieldNames[f])
		}
	}
	if len(d.b) != 0 {
		return Op{}, formatErrorf("op %s: %d trailing bytes", op.Code, len(d.b))
	}
	return op, op.check()
}

// check rejects flag and mask bits that format version 1 does not define.
func (op *Op) check() error {
	if op.Flags > renameFlagsMax {
		return formatErrorf("op %s: unknown flags %#x", op.Code, op.Flags)
	}
	if op.Mask&^setMaskAll != 0 {
		return formatErrorf("op %s: unknown mask bits %#x", op.Code, op.Mask)
	}
	return nil
}

// decoder reads fields from the front of b; each method reports whether b
// held enough bytes, and consumes nothing when it did not.
type decoder struct {
	b []byte
}

func (d *decoder) field(op *Op, f field) bool {
	switch f {
	case fName:
		return d.str(&op.Name)
	case fParent:
		return d.u64(&op.Parent)
	case fIno:
		return d.u64(&op.Ino)
	case fNewParent:
		return d.u64(&op.NewParent)
	case fNewName:
		return d.str(&op.NewName)
	case fMode:
		return d.u32(&op.Mode)
	case fUID:
		return d.u32(&op.UID)
	case fGID:
		return d.u32(&op.GID)
	case fFlags:
		return d.u32(&op.Flags)
	case fMask:
		return d.u32(&op.Mask)
	case fAtime:
		return d.i64(&op.Atime)
	case fMtime:
		return d.i64(&op.Mtime)
	case fSize:
		return d.u64(&op.Size)
	case fHash:
		return d.hash(&op.Hash)
	case fTarget:
		return d.str(&op.Target)
	case fNlink:
		return d.u32(&op.Nlink)
	case fSubdirs:
		return d.u32(&op.Subdirs)
	case fSeq:
		return d.u64(&op.Seq)
	case fCount:
		return d.u64(&op.Count)
	}
	panic("record: decoder: unknown field")
}

func (d *decoder) u32(v *uint32) bool {
	if len(d.b) < 4 {
		return false
	}
	*v = binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return true
}

func (d *decoder) u64(v *uint64) bool {
	if len(d.b) < 8 {
		return false
	}
	*v = binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return true
}

func (d *decoder) i64(v *int64) bool {
	var u uint64
	ok := d.u64(&u)
	*v = int64(u)
	return ok
}

func (d *decoder) hash(v *[32]byte) bool {
	if len(d.b) < len(v) {
		return false
	}
	d.b = d.b[copy(v[:], d.b):]
	return true
}

func (d *decoder) str(v *string) bool {
	if len(d.b) < 2 {
		return false
	}
	n := int(binary.LittleEndian.Uint16(d.b))
	if len(d.b)-2 < n {
		return false
	}
	*v = string(d.b[2 : 2+n])
	d.b = d.b[2+n:]
	return true
}
