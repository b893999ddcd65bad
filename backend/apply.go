package backend

import (
	"fmt"
	"strings"

	"github.com/packdir/packdir/backend/record"
)

// effects are what applying an op asks of the world outside the index.
// They are carried out only once the op is durable.
type effects struct {
	dropSpool []uint64 // spool files no longer needed
	// unlinked are the files whose last name went, as they were: a
	// holder may still use them (see hold.go).
	unlinked []Attr
}

// apply applies one op to the index. It validates first and changes
// nothing when it returns an error, so the same function serves live
// changes (where an error becomes the caller's errno and no record is
// written), crash replay and rebuild (where an error means the journal
// contradicts itself).
func apply(x ix, op *record.Op, fx *effects) error {
	switch op.Code {
	case record.OpUser:
		return applyUser(x, op)
	case record.OpCreate:
		return applyCreate(x, op)
	case record.OpSymlink:
		return applyCreate(x, op)
	case record.OpLink:
		return applyLink(x, op)
	case record.OpUnlink:
		return applyUnlink(x, op, fx)
	case record.OpRename:
		return applyRename(x, op, fx)
	case record.OpSetattr:
		return applySetattr(x, op)
	case record.OpCommit:
		return applyCommit(x, op, fx)
	case record.OpSpool:
		return applySpool(x, op)
	case record.OpQuota:
		return applyQuota(x, op)
	}
	return fmt.Errorf("%w: op code %d", ErrInvalid, op.Code)
}

// checkName applies ext4's rules for a directory entry name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
		return ErrInvalid
	case len(name) > MaxNameLen:
		return ErrNameTooLong
	}
	return nil
}

// dir returns directory ino, or ErrNotDir / ErrNotFound.
func (x ix) dir(ino uint64) (*inode, error) {
	n, err := x.inode(ino)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, ErrNotDir
	}
	return n, nil
}

// freeName checks that name can be created in directory parent.
func (x ix) freeName(parent uint64, name string) (*inode, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p, err := x.dir(parent)
	if err != nil {
		return nil, err
	}
	if _, ok, err := x.dirent(parent, name); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrExists
	}
	return p, nil
}

func applyUser(x ix, op *record.Op) error {
	if x.tx.Bucket(bucketUsers).Get([]byte(op.Name)) != nil {
		return ErrExists
	}
	mkdir := record.Op{Code: record.OpCreate, Time: op.Time, Parent: RootIno, Name: op.Name,
		Ino: op.Ino, Mode: ModeDir | 0o700, UID: op.UID, GID: op.GID}
	if err := applyCreate(x, &mkdir); err != nil {
		return err
	}
	return x.tx.Bucket(bucketUsers).Put([]byte(op.Name), encodeUser(userRec{Ino: op.Ino, UID: op.UID, GID: op.GID}))
}

func applyCreate(x ix, op *record.Op) error {
	p, err := x.freeName(op.Parent, op.Name)
	if err != nil {
		return err
	}
	if _, err := x.inode(op.Ino); err == nil {
		return &IndexError{Reason: fmt.Sprintf("inode %d created twice", op.Ino)}
	}
	n := &inode{Mode: op.Mode, UID: op.UID, GID: op.GID, Nlink: 1, Atime: op.Time, Mtime: op.Time, Ctime: op.Time}
	if op.Code == record.OpSymlink {
		n.Mode = ModeSymlink | 0o777
		n.Target, n.Size = op.Target, uint64(len(op.Target))
	}
	switch n.Mode & ModeType {
	case ModeDir:
		n.Parent = op.Parent
		p.Subdirs++
	case ModeRegular, ModeSymlink:
	default:
		return fmt.Errorf("%w: file type %o", ErrInvalid, n.Mode&ModeType)
	}
	p.setTimes(op.Time)
	if next := x.metaUint64(keyNextIno); op.Ino >= next {
		if err := x.putMetaUint64(keyNextIno, op.Ino+1); err != nil {
			return err
		}
	}
	return firstErr(x.putInode(op.Ino, n), x.putInode(op.Parent, p),
		x.putDirent(op.Parent, op.Name, dirent{Ino: op.Ino, Mode: n.Mode}))
}

func applyLink(x ix, op *record.Op) error {
	p, err := x.freeName(op.Parent, op.Name)
	if err != nil {
		return err
	}
	n, err := x.inode(op.Ino)
	if err != nil {
		return err
	}
	if n.isDir() {
		return ErrNotPermitted
	}
	n.Nlink++
	n.Ctime = op.Time
	p.setTimes(op.Time)
	return firstErr(x.putInode(op.Ino, n), x.putInode(op.Parent, p),
		x.putDirent(op.Parent, op.Name, dirent{Ino: op.Ino, Mode: n.Mode}))
}

func applyUnlink(x ix, op *record.Op, fx *effects) error {
	p, err := x.dir(op.Parent)
	if err != nil {
		return err
	}
	d, ok, err := x.dirent(op.Parent, op.Name)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	if err := x.dropName(op.Parent, p, op.Name, d, op.Time, fx); err != nil {
		return err
	}
	return x.putInode(op.Parent, p)
}

// dropName removes entry name (pointing at d) from directory p, whose
// record the caller writes back. A directory must be empty; a file whose
// last name goes is dropped with its payload reference.
func (x ix) dropName(parent uint64, p *inode, name string, d dirent, t int64, fx *effects) error {
	n, err := x.inode(d.Ino)
	if err != nil {
		return err
	}
	if n.isDir() {
		if !x.dirEmpty(d.Ino) {
			return ErrNotEmpty
		}
		p.Subdirs--
		n.Nlink = 0
	} else {
		n.Nlink--
		n.Ctime = t
	}
	p.setTimes(t)
	if err := x.deleteDirent(parent, name); err != nil {
		return err
	}
	if n.Nlink > 0 {
		return x.putInode(d.Ino, n)
	}
	return x.dropInode(d.Ino, n, fx)
}

func (x ix) dropInode(ino uint64, n *inode, fx *effects) error {
	if n.isFile() {
		a := n.attr(ino)
		a.Nlink = 0
		fx.unlinked = append(fx.unlinked, a)
	}
	if n.sealed() {
		if err := x.unref(n.Payload); err != nil {
			return err
		}
		if err := x.charge(n, -1); err != nil {
			return err
		}
	} else if n.isFile() {
		fx.dropSpool = append(fx.dropSpool, ino)
	}
	return x.deleteInode(ino)
}

func applyRename(x ix, op *record.Op, fx *effects) error {
	if err := checkName(op.NewName); err != nil {
		return err
	}
	sp, err := x.dir(op.Parent)
	if err != nil {
		return err
	}
	src, ok, err := x.dirent(op.Parent, op.Name)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	dp := sp
	if op.NewParent != op.Parent {
		if dp, err = x.dir(op.NewParent); err != nil {
			return err
		}
	}
	if src.Mode&ModeType == ModeDir {
		if err := x.checkNotAncestor(src.Ino, op.NewParent); err != nil {
			return err
		}
	}
	dst, exists, err := x.dirent(op.NewParent, op.NewName)
	if err != nil {
		return err
	}
	switch {
	case op.Flags == record.RenameExchange:
		if !exists {
			return ErrNotFound
		}
		return x.exchange(op, sp, dp, src, dst)
	case exists && op.Flags == record.RenameNoReplace:
		return ErrExists
	case exists && dst.Ino == src.Ino:
		return nil // two names of one inode: rename(2) does nothing
	case exists:
		if err := checkReplace(src, dst); err != nil {
			return err
		}
		if err := x.dropName(op.NewParent, dp, op.NewName, dst, op.Time, fx); err != nil {
			return err
		}
	}
	return x.move(op, sp, dp, src)
}

// checkReplace applies rename(2)'s type rules for an existing target.
func checkReplace(src, dst dirent) error {
	srcDir, dstDir := src.Mode&ModeType == ModeDir, dst.Mode&ModeType == ModeDir
	switch {
	case srcDir && !dstDir:
		return ErrNotDir
	case !srcDir && dstDir:
		return ErrIsDir
	}
	return nil
}

// checkNotAncestor refuses to move directory ino under itself.
func (x ix) checkNotAncestor(ino, newParent uint64) error {
	for cur := newParent; ; {
		if cur == ino {
			return ErrInvalid
		}
		if cur == RootIno {
			return nil
		}
		n, err := x.inode(cur)
		if err != nil {
			return err
		}
		cur = n.Parent
	}
}

// move finishes a rename whose target name is free.
func (x ix) move(op *record.Op, sp, dp *inode, src dirent) error {
	n, err := x.inode(src.Ino)
	if err != nil {
		return err
	}
	n.Ctime = op.Time
	if n.isDir() && op.NewParent != op.Parent {
		sp.Subdirs--
		dp.Subdirs++
		n.Parent = op.NewParent
	}
	sp.setTimes(op.Time)
	dp.setTimes(op.Time)
	return firstErr(x.deleteDirent(op.Parent, op.Name), x.putDirent(op.NewParent, op.NewName, src),
		x.putInode(src.Ino, n), x.putInode(op.Parent, sp), x.putInode(op.NewParent, dp))
}

// exchange swaps two entries (RENAME_EXCHANGE).
func (x ix) exchange(op *record.Op, sp, dp *inode, a, b dirent) error {
	if b.Mode&ModeType == ModeDir {
		if err := x.checkNotAncestor(b.Ino, op.Parent); err != nil {
			return err
		}
	}
	for _, e := range []struct {
		d      dirent
		parent uint64
	}{{a, op.NewParent}, {b, op.Parent}} {
		n, err := x.inode(e.d.Ino)
		if err != nil {
			return err
		}
		n.Ctime = op.Time
		if n.isDir() {
			n.Parent = e.parent
		}
		if err := x.putInode(e.d.Ino, n); err != nil {
			return err
		}
	}
	if op.Parent != op.NewParent {
		aDir, bDir := a.Mode&ModeType == ModeDir, b.Mode&ModeType == ModeDir
		if aDir && !bDir {
			sp.Subdirs--
			dp.Subdirs++
		} else if bDir && !aDir {
			sp.Subdirs++
			dp.Subdirs--
		}
	}
	sp.setTimes(op.Time)
	dp.setTimes(op.Time)
	return firstErr(x.putDirent(op.Parent, op.Name, b), x.putDirent(op.NewParent, op.NewName, a),
		x.putInode(op.Parent, sp), x.putInode(op.NewParent, dp))
}

func applySetattr(x ix, op *record.Op) error {
	n, err := x.inode(op.Ino)
	if err != nil {
		return err
	}
	if op.Mask&record.SetSize != 0 && !n.spooled() {
		return fmt.Errorf("%w: size of a sealed file", ErrInvalid)
	}
	if op.Mask&record.SetMode != 0 {
		n.Mode = n.Mode&ModeType | op.Mode&ModePerm
	}
	if op.Mask&record.SetUID != 0 && n.sealed() && n.UID != op.UID {
		// chown moves the message to the new owner's usage.
		if err := x.charge(n, -1); err != nil {
			return err
		}
		n.UID = op.UID
		if err := x.charge(n, 1); err != nil {
			return err
		}
	}
	if op.Mask&record.SetUID != 0 {
		n.UID = op.UID
	}
	if op.Mask&record.SetGID != 0 {
		n.GID = op.GID
	}
	if op.Mask&record.SetAtime != 0 {
		n.Atime = op.Atime
	}
	if op.Mask&record.SetMtime != 0 {
		n.Mtime = op.Mtime
	}
	if op.Mask&record.SetSize != 0 {
		n.Size = op.Size
	}
	n.Ctime = op.Time
	return x.putInode(op.Ino, n)
}

func applyCommit(x ix, op *record.Op, fx *effects) error {
	n, err := x.inode(op.Ino)
	if err != nil {
		return err
	}
	if !n.spooled() {
		return fmt.Errorf("%w: commit of inode %d, which is not a spooled file", ErrInvalid, op.Ino)
	}
	if err := x.ref(op.Hash); err != nil {
		return err
	}
	n.Payload, n.Size, n.Mtime, n.Ctime = op.Hash, op.Size, op.Mtime, op.Time
	if err := x.charge(n, 1); err != nil {
		return err
	}
	fx.dropSpool = append(fx.dropSpool, op.Ino)
	return x.putInode(op.Ino, n)
}

func applySpool(x ix, op *record.Op) error {
	n, err := x.inode(op.Ino)
	if err != nil {
		return err
	}
	if !n.sealed() {
		return fmt.Errorf("%w: spool of inode %d, which is not sealed", ErrInvalid, op.Ino)
	}
	if err := x.unref(n.Payload); err != nil {
		return err
	}
	if err := x.charge(n, -1); err != nil {
		return err
	}
	n.Payload = [32]byte{}
	n.Ctime = op.Time
	return x.putInode(op.Ino, n)
}

// ref and unref count the inodes holding a payload, and keep the
// container's live byte count in step as the count leaves or reaches zero.
func (x ix) ref(sum [32]byte) error   { return x.addRef(sum, 1) }
func (x ix) unref(sum [32]byte) error { return x.addRef(sum, -1) }

func (x ix) addRef(sum [32]byte, delta int) error {
	p, ok, err := x.payload(sum)
	if err != nil {
		return err
	}
	if !ok {
		return &IndexError{Reason: fmt.Sprintf("payload %x is not stored", sum[:8])}
	}
	if delta < 0 && p.Refs == 0 {
		return &IndexError{Reason: fmt.Sprintf("payload %x has no reference to drop", sum[:8])}
	}
	before := p.Refs
	p.Refs = uint32(int(p.Refs) + delta)
	if (before == 0) != (p.Refs == 0) {
		c, err := x.container(p.Container)
		if err != nil {
			return err
		}
		size := uint64(record.EncodedSize(32 + int(p.Length)))
		if delta > 0 {
			c.Live += size
		} else {
			c.Live -= size
		}
		if err := x.putContainer(p.Container, c); err != nil {
			return err
		}
	}
	return x.putPayload(sum, p)
}

// applyPayload indexes a payload record. A payload already indexed keeps
// its first location: live writes never store one twice.
func applyPayload(x ix, sum [32]byte, loc payloadLoc) error {
	if _, ok, err := x.payload(sum); err != nil || ok {
		return err
	}
	return x.putPayload(sum, loc)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
