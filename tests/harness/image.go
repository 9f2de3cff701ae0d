package harness

import (
	"archive/tar"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// File is one entry of a test image layer, described the way a tar header
// describes it.
type File struct {
	// Path is the absolute path in the image ("/etc/passwd"); a leading slash
	// is optional. Whiteouts are ordinary entries named ".wh.<name>" or
	// ".wh..wh..opq".
	Path string
	// Mode carries the type bits (os.ModeDir, os.ModeSymlink,
	// os.ModeNamedPipe, os.ModeDevice|os.ModeCharDevice, os.ModeDevice for a
	// block device; none for a regular file) and the permission bits including
	// os.ModeSetuid, os.ModeSetgid and os.ModeSticky.
	Mode     os.FileMode
	Uid, Gid int
	// Content is the data of a regular file.
	Content []byte
	// Linkname is the target of a symlink (kept as written) or, with
	// Hardlink, the image path of the hard link's target, which must come
	// earlier in the same layer. A hard link's tar header carries its
	// target's mode, owner and mtime; its own are ignored.
	Linkname string
	Hardlink bool
	// Xattrs are written as PAX "SCHILY.xattr." records.
	Xattrs             map[string]string
	Devmajor, Devminor int64
	// ModTime is stored to the second; the zero value means DefaultModTime so
	// that layers are reproducible.
	ModTime time.Time
}

// Layer is the ordered list of entries of one layer tar; the tar keeps this
// order.
type Layer []File

// DefaultModTime is the mtime of every File whose ModTime is zero.
var DefaultModTime = time.Date(2024, time.January, 2, 3, 4, 5, 0, time.UTC)

// imageEntryName returns the tar name of an image path: relative, cleaned,
// and with a trailing slash for directories. It returns "" for the root.
func imageEntryName(p string, dir bool) string {
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		return ""
	}
	if dir {
		name += "/"
	}
	return name
}

// tarHeader converts f into the header the layer tar carries for it.
func (f File) tarHeader() (*tar.Header, error) {
	m := f.Mode
	hdr := &tar.Header{
		Name:     imageEntryName(f.Path, m.IsDir() && !f.Hardlink),
		Mode:     tarPermBits(m),
		Uid:      f.Uid,
		Gid:      f.Gid,
		ModTime:  f.ModTime,
		Devmajor: f.Devmajor,
		Devminor: f.Devminor,
	}
	if hdr.Name == "" {
		return nil, fmt.Errorf("file %q: the root cannot be a layer entry: %w", f.Path, errdefs.ErrInvalidArgument)
	}
	if hdr.ModTime.IsZero() {
		hdr.ModTime = DefaultModTime
	}
	// USTAR holds whole seconds; truncating here keeps the format choice (and
	// so the digest) independent of sub-second noise.
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	switch {
	case f.Hardlink:
		hdr.Typeflag = tar.TypeLink
		hdr.Linkname = imageEntryName(f.Linkname, false)
		if hdr.Linkname == "" {
			return nil, fmt.Errorf("hard link %q: empty target: %w", f.Path, errdefs.ErrInvalidArgument)
		}
	case m&os.ModeDir != 0:
		hdr.Typeflag = tar.TypeDir
	case m&os.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = f.Linkname
	case m&os.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		hdr.Typeflag = tar.TypeChar
	case m&os.ModeDevice != 0:
		hdr.Typeflag = tar.TypeBlock
	case m.Type() == 0:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = int64(len(f.Content))
	default:
		return nil, fmt.Errorf("file %q: unsupported mode %v: %w", f.Path, m, errdefs.ErrInvalidArgument)
	}
	if hdr.Typeflag != tar.TypeReg && len(f.Content) > 0 {
		return nil, fmt.Errorf("file %q: content on a non-regular entry: %w", f.Path, errdefs.ErrInvalidArgument)
	}
	if len(f.Xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(f.Xattrs))
		for k, v := range f.Xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return hdr, nil
}

// tarPermBits maps Go's mode bits to the Unix bits a tar header stores.
func tarPermBits(m os.FileMode) int64 {
	bits := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}
