package lazyfs

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// mayAccess applies the Unix permission rules to a caller: root may read
// anything and execute what has an execute bit (or is a directory); anyone
// else gets the bits of exactly one class, owner, group or other.
func mayAccess(c fuse.Caller, n *node, mask uint32) bool {
	if mask == 0 {
		return true
	}
	if c.Uid == 0 {
		return mask&unix.X_OK == 0 || n.mode&0o111 != 0 || n.isDir()
	}
	perm := n.mode
	var bits uint32
	switch {
	case c.Uid == n.uid:
		bits = perm >> 6
	case c.Gid == n.gid:
		bits = perm >> 3
	case (perm>>3)&mask != perm&mask && inSupplementaryGroup(c.Pid, n.gid):
		// Reading the caller's groups only matters when group and
		// other bits disagree.
		bits = perm >> 3
	default:
		bits = perm
	}
	return bits&mask == mask
}

// inSupplementaryGroup reports whether process pid belongs to gid. The
// kernel gives the caller's pid as seen from this process's namespace (0 if
// it is not visible): such a caller counts as not in the group.
func inSupplementaryGroup(pid, gid uint32) bool {
	if pid == 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Groups:"))
		if !ok {
			continue
		}
		for _, f := range bytes.Fields(rest) {
			if g, err := strconv.ParseUint(string(f), 10, 32); err == nil && uint32(g) == gid {
				return true
			}
		}
		return false
	}
	return false
}
