package harness

import (
	"archive/tar"
	"fmt"
	"io"
	"path"

	"github.com/containerd/errdefs"
)

// writeLayerTar writes l as an uncompressed tar in the order given. Owners
// are numeric only (no user or group names), so the bytes depend on nothing
// but l.
func writeLayerTar(w io.Writer, l Layer) error {
	tw := tar.NewWriter(w)
	written := make(map[string]File, len(l))
	for _, f := range l {
		hdrFile := f
		if f.Hardlink {
			// Unpackers (containerd's among them) chmod, chown and chtime
			// the path of a hard link after linking it, which changes the
			// shared inode: the header must carry the target's attributes,
			// as GNU tar writes them.
			target, ok := written[path.Clean("/"+f.Linkname)]
			if !ok || target.Mode.IsDir() {
				return fmt.Errorf("hard link %q: target %q is not an earlier non-directory entry of the layer: %w", f.Path, f.Linkname, errdefs.ErrInvalidArgument)
			}
			hdrFile.Mode, hdrFile.Uid, hdrFile.Gid, hdrFile.ModTime = target.Mode, target.Uid, target.Gid, target.ModTime
		}
		hdr, err := hdrFile.tarHeader()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("failed to write tar header for %q: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Content); err != nil {
				return fmt.Errorf("failed to write tar data for %q: %w", f.Path, err)
			}
		}
		written[path.Clean("/"+f.Path)] = hdrFile
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to finish layer tar: %w", err)
	}
	return nil
}
