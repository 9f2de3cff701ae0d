package lazyfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/metrics"
)

// entryStat is what the suite compares of one path.
type entryStat struct {
	ino    uint64
	mode   uint32
	uid    uint32
	gid    uint32
	size   int64
	nlink  uint64
	rdev   uint64
	mtime  int64
	target string
	xattrs map[string]string // except trusted.* and security.*
}

// snapshotTree lstats every path under root, relative to it ("" is root).
func snapshotTree(t *testing.T, root string) map[string]entryStat {
	t.Helper()
	out := make(map[string]entryStat)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entryStat{ino: st.Ino, mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, nlink: st.Nlink, rdev: st.Rdev, mtime: st.Mtim.Sec}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		e.xattrs = listXattrs(t, p)
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listXattrs returns a path's xattrs except trusted.* and security.*,
// which the layer's owner does not control (DESIGN.md).
func listXattrs(t *testing.T, p string) map[string]string {
	t.Helper()
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string]string{}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.") {
			continue
		}
		out[name] = getXattr(t, p, name)
	}
	return out
}

func getXattr(t *testing.T, p, name string) string {
	t.Helper()
	size, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	buf := make([]byte, size)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return string(buf[:n])
}

// extractNative unpacks a tar the way containerd's overlayfs snapshotter
// does, as the reference every lazily served byte is compared with.
func extractNative(t *testing.T, tarBytes []byte) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := archive.Apply(t.Context(), dir, bytes.NewReader(tarBytes), archive.WithConvertWhiteout(archive.OverlayConvertWhiteout)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarPaths returns the clean paths the tar lists.
func tarPaths(entries []tarEntry) map[string]bool {
	out := map[string]bool{}
	for _, e := range entries {
		out[cleanPath(e.hdr.Name)] = true
	}
	return out
}

func TestFSMatchesNativeUnpack(t *testing.T) {
	testreq.RequireFUSE(t)
	entries := mainLayerEntries()
	tarBytes := writeTar(t, entries)
	native := extractNative(t, tarBytes)
	want := snapshotTree(t, native)
	listed := tarPaths(entries)

	for _, tc := range []struct {
		name         string
		minChunkSize int
	}{
		{"one stream per chunk", 0},
		// Small chunks share compressed streams (inner offsets).
		{"shared streams", 20 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layer := mainLayer(t, tc.minChunkSize)
			tree := layer.tree(t)
			m := newMount(t, tree, &blobReader{blob: layer.blob})
			m.serve(ServeOptions{})

			var got map[string]entryStat
			within(t, "walk", func() { got = snapshotTree(t, m.dir) })
			compareTrees(t, want, got, listed)
			within(t, "contents", func() { compareContents(t, native, m.dir, want) })
			within(t, "special cases", func() { checkSpecialCases(t, m.dir, tree) })
			m.unmount()
		})
	}
}

// compareTrees compares the lazily served tree with the native unpack.
func compareTrees(t *testing.T, want, got map[string]entryStat, listed map[string]bool) {
	t.Helper()
	if w, g := slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got)); !slices.Equal(w, g) {
		t.Fatalf("paths differ:\nnative %q\nlazy   %q", w, g)
	}
	// Hard links: the same inode on both sides.
	inodes := map[uint64]uint64{}
	for p, w := range want {
		g := got[p]
		if p == "" {
			continue // an unpack never applies the root's own entry
		}
		whiteout := w.mode&unix.S_IFMT == unix.S_IFCHR && w.rdev == 0
		isDir := w.mode&unix.S_IFMT == unix.S_IFDIR
		if w.mode != g.mode || w.uid != g.uid || w.gid != g.gid || w.rdev != g.rdev || w.target != g.target {
			t.Errorf("%s: mode %o uid %d gid %d rdev %#x target %q, native mode %o uid %d gid %d rdev %#x target %q",
				p, g.mode, g.uid, g.gid, g.rdev, g.target, w.mode, w.uid, w.gid, w.rdev, w.target)
		}
		if !isDir && (w.size != g.size || w.nlink != g.nlink) {
			t.Errorf("%s: size %d nlink %d, native %d %d", p, g.size, g.nlink, w.size, w.nlink)
		}
		if isDir && w.nlink != g.nlink {
			t.Errorf("%s: directory nlink %d, native %d", p, g.nlink, w.nlink)
		}
		// The unpack stamps whiteouts and the parents a tar only
		// implies with the time of the unpack.
		if listed[p] && !whiteout && w.mtime != g.mtime {
			t.Errorf("%s: mtime %d, native %d", p, g.mtime, w.mtime)
		}
		if !maps.Equal(w.xattrs, g.xattrs) {
			t.Errorf("%s: xattrs %q, native %q", p, g.xattrs, w.xattrs)
		}
		if prev, ok := inodes[w.ino]; ok && prev != g.ino {
			t.Errorf("%s: hard link has inode %d, its other name %d", p, g.ino, prev)
		}
		inodes[w.ino] = g.ino
	}
}

// oddReads are (offset, length) pairs around page and chunk boundaries.
var oddReads = [][2]int64{
	{0, 1}, {1, 7}, {4095, 2}, {4096, 4097}, {testChunkSize - 3, 10},
	{testChunkSize, testChunkSize}, {testChunkSize + 1, 3*testChunkSize + 5},
	{12345, 100000}, {-1, 1}, {-1, 100}, {0, 1 << 20},
}

// compareContents reads every regular file through the mount, whole and by
// pread at odd offsets with O_DIRECT (so that each becomes a READ request
// with that offset, not a page cache hit), and compares with the native
// files.
func compareContents(t *testing.T, native, mnt string, want map[string]entryStat) {
	t.Helper()
	for p, w := range want {
		if w.mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		wantData, err := os.ReadFile(filepath.Join(native, p))
		if err != nil {
			t.Fatal(err)
		}
		gotData, err := fusetest.ReadFile(filepath.Join(mnt, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if sha256Of(gotData) != sha256Of(wantData) {
			t.Errorf("%s: contents differ (%d bytes, native %d)", p, len(gotData), len(wantData))
		}
		fd, err := fusetest.Open(filepath.Join(mnt, p), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("%s: open O_DIRECT: %v", p, err)
			continue
		}
		for _, r := range oddReads {
			off := r[0]
			if off < 0 {
				off = max(0, int64(len(wantData))+off)
			}
			buf := make([]byte, r[1])
			n, err := fusetest.Pread(fd, buf, off)
			if err != nil {
				t.Errorf("%s: pread(%d, %d): %v", p, off, r[1], err)
				continue
			}
			off = min(off, int64(len(wantData)))
			end := min(off+r[1], int64(len(wantData)))
			if !bytes.Equal(buf[:n], wantData[off:end]) {
				t.Errorf("%s: pread(%d, %d) returned %d bytes that differ from native %d", p, off, r[1], n, end-off)
			}
		}
		unix.Close(fd)
	}
}

// checkSpecialCases checks what the native comparison does not show.
func checkSpecialCases(t *testing.T, mnt string, tree *Tree) {
	t.Helper()
	at := func(p string) string { return filepath.Join(mnt, p) }

	// Opaque directory: overlayfs asks for trusted.overlay.opaque.
	if v := getXattr(t, at("opq"), opaqueXattr); v != "y" {
		t.Errorf("opq: %s = %q", opaqueXattr, v)
	}
	for _, p := range []string{"bin", ""} {
		if _, err := unix.Lgetxattr(at(p), opaqueXattr, make([]byte, 8)); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%q: getxattr %s: %v, want ENODATA", p, opaqueXattr, err)
		}
	}
	// trusted.* xattrs of the layer never pass through.
	if _, err := unix.Lgetxattr(at("data/small.txt"), "trusted.evil", make([]byte, 8)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("trusted.evil: %v, want ENODATA", err)
	}
	// Too small a buffer is ERANGE.
	if _, err := unix.Lgetxattr(at("data/small.txt"), "user.comment", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("getxattr into 2 bytes: %v, want ERANGE", err)
	}
	if _, err := unix.Llistxattr(at("data/small.txt"), make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("listxattr into 2 bytes: %v, want ERANGE", err)
	}

	// Read-only, whatever the way in.
	for name, err := range map[string]error{
		"create":   os.WriteFile(at("new"), nil, 0o644),
		"truncate": os.Truncate(at("bin/su"), 0),
		"remove":   os.Remove(at("bin/su")),
		"mkdir":    os.Mkdir(at("newdir"), 0o755),
		"chmod":    os.Chmod(at("bin/su"), 0o777),
		"setxattr": unix.Lsetxattr(at("bin/su"), "user.x", []byte("1"), 0),
		"access W": unix.Access(at("bin/su"), unix.W_OK),
	} {
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	if err := unix.Access(at("data/small.txt"), unix.R_OK); err != nil {
		t.Errorf("access R_OK as root: %v", err)
	}
	if err := unix.Access(at("data/small.txt"), unix.X_OK); !errors.Is(err, unix.EACCES) {
		t.Errorf("access X_OK on a 0640 file as root: %v, want EACCES", err)
	}
	if err := unix.Access(at("bin/su"), unix.X_OK); err != nil {
		t.Errorf("access X_OK on an executable: %v", err)
	}
	if _, err := os.Lstat(at("bin/missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing name: %v", err)
	}
	if _, err := os.Lstat(at("bin/su/x")); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("name below a file: %v, want ENOTDIR", err)
	}

	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if st.Files != uint64(tree.Len()) || st.Bsize != blockSize || st.Namelen != maxNameLen || st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("statfs: files %d bsize %d namelen %d flags %#x", st.Files, st.Bsize, st.Namelen, st.Flags)
	}

	// Raw listing: "." and ".." come first with their inodes, and every
	// d_ino is the inode stat reports.
	checkRawListing(t, at("many"), at(""))
}

// checkRawListing reads a directory with getdents64 through a small buffer
// (many calls, each continuing at the kernel's offset).
func checkRawListing(t *testing.T, dir, parent string) {
	t.Helper()
	fd, err := fusetest.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	inos := map[string]uint64{}
	var names []string
	buf := make([]byte, 512)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			ino := binary.NativeEndian.Uint64(b[0:])
			reclen := binary.NativeEndian.Uint16(b[16:])
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			inos[name] = ino
			names = append(names, name)
			b = b[reclen:]
		}
	}
	if len(names) < 2 || names[0] != "." || names[1] != ".." {
		t.Fatalf("listing starts with %q", names[:min(2, len(names))])
	}
	if !slices.IsSorted(names[2:]) || len(names) != 302 {
		t.Errorf("listing of %d names, sorted %v", len(names), slices.IsSorted(names[2:]))
	}
	for name, ino := range inos {
		p := path.Join(dir, name)
		if name == ".." {
			p = parent
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ino != ino {
			t.Errorf("%s: d_ino %d, st_ino %d", name, ino, st.Ino)
		}
	}
}

func TestFSReadErrorIsEIO(t *testing.T) {
	testreq.RequireFUSE(t)
	layer := mainLayer(t, 0)
	tree := layer.tree(t)
	reader := &blobReader{blob: layer.blob}
	m := newMount(t, tree, reader)
	m.serve(ServeOptions{})

	_, n := resolve(t, tree, "bin/busybox")
	bad := tree.fileChunks(n)[2]
	reader.failChunk(bad.Digest)
	failures := counterValue(t, metrics.FuseOpFailures.WithLabelValues("read"))

	within(t, "reads", func() {
		fd, err := fusetest.Open(filepath.Join(m.dir, "bin/busybox"), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		buf := make([]byte, 100)
		if _, err := fusetest.Pread(fd, buf, bad.Offset+10); !errors.Is(err, unix.EIO) {
			t.Errorf("read of a failing chunk: %v, want EIO", err)
		}
		if _, err := fusetest.Pread(fd, buf, 0); err != nil {
			t.Errorf("read of a good chunk: %v", err)
		}
	})
	if got := counterValue(t, metrics.FuseOpFailures.WithLabelValues("read")); got != failures+1 {
		t.Errorf("read failures counted %v, want %v", got, failures+1)
	}
	m.unmount()
}

// counterValue reads a counter's current value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
