package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// The base layer of the app image is a Debian minbase root filesystem, as
// in the image issue 13 measures stargz-snapshotter on: the first command
// (`true`, /usr/bin/true) is then started as a real one is, through the
// dynamic linker and libc read from the lazily mounted layer.
const (
	debianSuite  = "bookworm"
	debianMirror = "http://deb.debian.org/debian"
	// debianEpoch is SOURCE_DATE_EPOCH for mmdebstrap (DefaultModTime):
	// the same packages give the same tar.
	debianEpoch = "1704164645"
)

// debianRootfs returns the Debian minbase rootfs as a layer. mmdebstrap
// (scripts/install-deps.sh installs it) builds it once per machine into
// cacheDir, which later invocations read back, so that the image, and so
// its cached conversion, stays the same while the mirror moves on; with no
// cacheDir it is built into work every time (about two minutes).
func debianRootfs(ctx context.Context, cacheDir, work string) (harness.Layer, error) {
	dir := cacheDir
	if dir == "" {
		dir = work
	}
	tarPath := filepath.Join(dir, "debian-"+debianSuite+"-minbase.tar")
	if _, err := os.Stat(tarPath); errors.Is(err, os.ErrNotExist) {
		progress("building a Debian %s minbase rootfs with mmdebstrap (once per machine; about two minutes)", debianSuite)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", dir, err)
		}
		tmp := tarPath + ".tmp"
		cmd := exec.CommandContext(ctx, "mmdebstrap", "--quiet", "--variant=minbase", debianSuite, tmp, debianMirror)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+debianEpoch)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("mmdebstrap failed: %w\n%s", err, out)
		}
		if err := os.Rename(tmp, tarPath); err != nil {
			return nil, fmt.Errorf("failed to keep the Debian rootfs: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("failed to look for the Debian rootfs: %w", err)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, fmt.Errorf("failed to open the Debian rootfs: %w", err)
	}
	defer f.Close()
	return layerFromTar(f)
}

// layerFromTar reads a root filesystem tar into a layer, entry by entry in
// tar order (a hard link's target comes before it).
func layerFromTar(r io.Reader) (harness.Layer, error) {
	tr := tar.NewReader(r)
	var l harness.Layer
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read the rootfs tar: %w", err)
		}
		p := path.Clean("/" + hdr.Name)
		if p == "/" {
			continue
		}
		f := harness.File{
			Path: p, Mode: hdr.FileInfo().Mode(), Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime,
			Devmajor: hdr.Devmajor, Devminor: hdr.Devminor,
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if f.Xattrs == nil {
					f.Xattrs = map[string]string{}
				}
				f.Xattrs[name] = v
			}
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			if f.Content, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("failed to read %s from the rootfs tar: %w", p, err)
			}
		case tar.TypeSymlink:
			f.Linkname = hdr.Linkname
		case tar.TypeLink:
			f.Linkname, f.Hardlink = path.Clean("/"+hdr.Linkname), true
		case tar.TypeDir, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		default:
			return nil, fmt.Errorf("rootfs tar: %s has an unexpected type %q", p, hdr.Typeflag)
		}
		l = append(l, f)
	}
}
