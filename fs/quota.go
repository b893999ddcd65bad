package fs

import "syscall"

// quotaErrno is EDQUOT for a write to a file in tmp/ once the file's
// owner is over quota, as a filesystem with disk quotas fails the write
// that needs a block the owner does not have. Side files (Dovecot's index,
// uidlist) stay writable, so that a user over quota can still read and
// delete mail; the commit into new/ or cur/ is where the quota bites.
func (n *node) quotaErrno() syscall.Errno {
	name, parent := n.Parent()
	if parent == nil || name == "" {
		return 0
	}
	p, ok := parent.Operations().(*node)
	if !ok {
		return 0
	}
	if dirName, _ := p.Parent(); dirName != "tmp" {
		return 0
	}
	if n.store().OverQuota(n.ino) {
		return syscall.EDQUOT
	}
	return 0
}
