package harness

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// CompareTrees walks two rootfs trees (as a container sees them: mounted,
// merged) and returns every difference, one human-readable line each, with
// want's value first: "missing in got: /etc/x", "extra in got: /y",
// "/a: mode 0644 != 0600". Both trees must hold the same paths; for each it
// compares, without following symlinks, the type, the permission bits with
// setuid, setgid and sticky, uid and gid, the size of regular files and
// symlinks, the symlink target, device numbers, xattrs other than trusted.*
// and security.*, the mtime to the second and the sha256 of regular files
// (read only when the sizes agree).
//
// Not compared: the root's mtime (it is the snapshot directory's, not the
// image's), directory sizes (each filesystem reports its own), link counts,
// inode numbers and atime/ctime. A file or xattr that cannot be read is
// reported as a difference; only a failure to walk either tree is an error.
func CompareTrees(want, got string) ([]string, error) {
	wantTree, err := walkTree(want)
	if err != nil {
		return nil, err
	}
	gotTree, err := walkTree(got)
	if err != nil {
		return nil, err
	}
	union := maps.Clone(wantTree)
	maps.Copy(union, gotTree)
	paths := slices.Sorted(maps.Keys(union))
	var diffs []string
	for _, p := range paths {
		w, g := wantTree[p], gotTree[p]
		switch {
		case g == nil:
			diffs = append(diffs, "missing in got: "+p)
		case w == nil:
			diffs = append(diffs, "extra in got: "+p)
		default:
			diffs = append(diffs, compareEntries(p, w, g)...)
		}
	}
	return diffs, nil
}

// compareEntries lists the differences of one path present in both trees.
func compareEntries(p string, w, g *treeEntry) []string {
	var diffs []string
	add := func(format string, args ...any) {
		diffs = append(diffs, p+": "+fmt.Sprintf(format, args...))
	}
	if w.fileType() != g.fileType() {
		// Nothing else is comparable between, say, a directory and a file.
		add("type %s != %s", fileTypeName(w.mode), fileTypeName(g.mode))
		return diffs
	}
	if wp, gp := w.mode&0o7777, g.mode&0o7777; wp != gp {
		add("mode %04o != %04o", wp, gp)
	}
	if w.uid != g.uid {
		add("uid %d != %d", w.uid, g.uid)
	}
	if w.gid != g.gid {
		add("gid %d != %d", w.gid, g.gid)
	}
	typ := w.fileType()
	if (typ == unix.S_IFREG || typ == unix.S_IFLNK) && w.size != g.size {
		add("size %d != %d", w.size, g.size)
	}
	if w.link != g.link {
		add("symlink target %q != %q", w.link, g.link)
	}
	if (typ == unix.S_IFCHR || typ == unix.S_IFBLK) && w.rdev != g.rdev {
		add("rdev %d:%d != %d:%d", unix.Major(w.rdev), unix.Minor(w.rdev), unix.Major(g.rdev), unix.Minor(g.rdev))
	}
	diffs = append(diffs, compareXattrs(p, w, g)...)
	if p != "/" && w.mtime != g.mtime {
		add("mtime %s != %s", formatUnix(w.mtime), formatUnix(g.mtime))
	}
	if typ == unix.S_IFREG && w.size == g.size {
		wantSum, wantErr := fileSHA256(w.abs)
		gotSum, gotErr := fileSHA256(g.abs)
		if wantErr != nil {
			add("cannot read in want: %v", wantErr)
		}
		if gotErr != nil {
			add("cannot read in got: %v", gotErr)
		}
		if wantErr == nil && gotErr == nil && wantSum != gotSum {
			add("sha256 %s != %s", wantSum, gotSum)
		}
	}
	return diffs
}

func compareXattrs(p string, w, g *treeEntry) []string {
	var diffs []string
	if w.xattrErr != nil {
		diffs = append(diffs, fmt.Sprintf("%s: cannot read xattrs in want: %v", p, w.xattrErr))
	}
	if g.xattrErr != nil {
		diffs = append(diffs, fmt.Sprintf("%s: cannot read xattrs in got: %v", p, g.xattrErr))
	}
	if len(diffs) > 0 {
		return diffs
	}
	for _, name := range slices.Sorted(maps.Keys(w.xattrs)) {
		gv, ok := g.xattrs[name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: xattr %s missing in got", p, name))
		case gv != w.xattrs[name]:
			diffs = append(diffs, fmt.Sprintf("%s: xattr %s %q != %q", p, name, w.xattrs[name], gv))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(g.xattrs)) {
		if _, ok := w.xattrs[name]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: xattr %s extra in got", p, name))
		}
	}
	return diffs
}

func fileTypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}

func formatUnix(sec int64) string {
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}
