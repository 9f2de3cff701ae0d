package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// treeEntry is what CompareTrees compares of one path, taken with lstat.
type treeEntry struct {
	abs      string // path on the host, for reading
	mode     uint32 // st_mode: type and the 07777 bits
	uid, gid uint32
	size     int64
	rdev     uint64
	mtime    int64 // seconds
	link     string
	xattrs   map[string]string
	xattrErr error
}

// walkTree lstats every path under root (root included, as "/") and never
// follows symlinks.
func walkTree(root string) (map[string]*treeEntry, error) {
	tree := map[string]*treeEntry{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, err := lstatEntry(p)
		if err != nil {
			return err
		}
		tree[filepath.Clean("/"+rel)] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to walk %s: %w", root, err)
	}
	return tree, nil
}

func lstatEntry(p string) (*treeEntry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := &treeEntry{
		abs:   p,
		mode:  st.Mode,
		uid:   st.Uid,
		gid:   st.Gid,
		size:  st.Size,
		rdev:  st.Rdev,
		mtime: st.Mtim.Sec,
	}
	if e.fileType() == unix.S_IFLNK {
		link, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.link = link
	}
	// An unreadable xattr list is a finding about that path, not a reason to
	// stop comparing the rest.
	e.xattrs, e.xattrErr = comparedXattrs(p)
	return e, nil
}

func (e *treeEntry) fileType() uint32 { return e.mode & unix.S_IFMT }

// comparedXattrs returns the xattrs of p (not following symlinks) except
// trusted.* and security.*, which belong to the host (overlay bookkeeping,
// LSM labels) rather than to the image.
func comparedXattrs(p string) (map[string]string, error) {
	names, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	xattrs := map[string]string{}
	for _, name := range names {
		if strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.") {
			continue
		}
		value, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed between list and get
		}
		if err != nil {
			return nil, err
		}
		xattrs[name] = value
	}
	return xattrs, nil
}

func listXattrs(p string) ([]string, error) {
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, &fs.PathError{Op: "llistxattr", Path: p, Err: err}
		}
		var names []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) (string, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			continue
		case err != nil:
			return "", &fs.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		return string(buf[:n]), nil
	}
}

// fileSHA256 hashes a regular file's content.
func fileSHA256(p string) (string, error) {
	// O_NOFOLLOW: the path was a regular file when walked; never let a swap
	// for a symlink lead the read outside the tree.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("failed to read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
