package maildir

// IsMessageDir reports whether the files in a directory of this name are
// Maildir messages: new/ and cur/, which a file enters only whole (by
// rename or link from tmp/). packdir seals a file that comes into such a
// directory into a container, and stats and fsck report one that stays
// unsealed there.
func IsMessageDir(name string) bool { return name == "new" || name == "cur" }
