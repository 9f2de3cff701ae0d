package harness

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/containerd/containerd/v2/pkg/archive"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// hostBusybox is where Debian's busybox-static installs the binary.
const hostBusybox = "/bin/busybox"

// requireTool fails a test that needs a program or file missing on the
// host, naming it, or skips it under LAZYFS_ALLOW_SKIP=1 (Require).
func requireTool(t *testing.T, path string) {
	t.Helper()
	_, err := exec.LookPath(path)
	Require(t, err)
}

func findEntry(l Layer, p string) *File {
	for i := range l {
		if path.Clean("/"+l[i].Path) == p {
			return &l[i]
		}
	}
	return nil
}

func TestTestImageLayersFeatures(t *testing.T) {
	requireTool(t, hostBusybox)
	layers := TestImageLayers(hostBusybox)
	if len(layers) != 3 {
		t.Fatalf("%d layers, want 3", len(layers))
	}
	base, data, changes := layers[0], layers[1], layers[2]
	must := func(l Layer, p string) *File {
		t.Helper()
		f := findEntry(l, p)
		if f == nil {
			t.Fatalf("no %s", p)
		}
		return f
	}

	t.Run("base", func(t *testing.T) {
		host, err := os.ReadFile(hostBusybox)
		if err != nil {
			t.Fatal(err)
		}
		if bb := must(base, "/bin/busybox"); !bytes.Equal(bb.Content, host) || bb.Mode != 0o755 {
			t.Errorf("/bin/busybox: mode %v, %d bytes; want 0755 and the host's %d", bb.Mode, len(bb.Content), len(host))
		}
		for _, applet := range []string{"sh", "sha256sum", "cat", "ls", "sleep", "stat", "true", "md5sum"} {
			f := must(base, "/bin/"+applet)
			symlink := f.Mode.Type() == os.ModeSymlink && f.Linkname == "busybox"
			hardlink := f.Hardlink && path.Clean("/"+f.Linkname) == "/bin/busybox"
			if !symlink && !hardlink {
				t.Errorf("/bin/%s is not a link to busybox: %+v", applet, f)
			}
		}
		if f := must(base, "/tmp"); f.Mode != os.ModeDir|os.ModeSticky|0o777 {
			t.Errorf("/tmp mode %v", f.Mode)
		}
		if f := must(base, "/etc"); !f.Mode.IsDir() {
			t.Errorf("/etc mode %v", f.Mode)
		}
	})

	t.Run("sizes", func(t *testing.T) {
		for p, size := range map[string]int{
			"/data/size/empty": 0, "/data/size/one-byte": 1, "/data/size/4k": 4096,
			"/data/size/1m-plus-3": 1<<20 + 3, TestImageRandomFile: 8 << 20,
		} {
			if got := len(must(data, p).Content); got != size {
				t.Errorf("%s: %d bytes, want %d", p, got, size)
			}
		}
		random := must(data, TestImageRandomFile).Content
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(random)
		zw.Close()
		if z.Len() < len(random) {
			t.Errorf("random file compresses to %d of %d bytes: lazy byte counts would mean little", z.Len(), len(random))
		}
		if again := findEntry(TestImageLayers(hostBusybox)[1], TestImageRandomFile); !bytes.Equal(again.Content, random) {
			t.Error("random file differs between two calls")
		}
	})

	t.Run("kinds", func(t *testing.T) {
		has := func(what string, ok func(File) bool) {
			t.Helper()
			if !slices.ContainsFunc(data, ok) {
				t.Errorf("layer 2 has no %s", what)
			}
		}
		has("0600 file", func(f File) bool { return f.Mode == 0o600 })
		has("4755 file", func(f File) bool { return f.Mode == os.ModeSetuid|0o755 })
		has("1777 dir", func(f File) bool { return f.Mode == os.ModeDir|os.ModeSticky|0o777 })
		has("0444 file", func(f File) bool { return f.Mode == 0o444 })
		has("1000:1000 file", func(f File) bool { return f.Uid == 1000 && f.Gid == 1000 && f.Mode.IsRegular() })
		has("65534 file", func(f File) bool { return f.Uid == 65534 && f.Gid == 65534 })
		has("relative symlink", func(f File) bool {
			return f.Mode.Type() == os.ModeSymlink && !strings.HasPrefix(f.Linkname, "/")
		})
		has("absolute symlink", func(f File) bool {
			return f.Mode.Type() == os.ModeSymlink && strings.HasPrefix(f.Linkname, "/")
		})
		has("hard link", func(f File) bool { return f.Hardlink && findEntry(data, path.Clean("/"+f.Linkname)) != nil })
		has("fifo", func(f File) bool { return f.Mode.Type() == os.ModeNamedPipe })
		has("char device", func(f File) bool {
			return f.Mode.Type() == os.ModeDevice|os.ModeCharDevice && f.Devmajor+f.Devminor > 0
		})
		has("user.* xattr", func(f File) bool {
			for k := range f.Xattrs {
				if strings.HasPrefix(k, "user.") {
					return true
				}
			}
			return false
		})
		has("unicode name", func(f File) bool { return utf8.RuneCountInString(f.Path) < len(f.Path) })
		has("name with a space", func(f File) bool { return strings.Contains(path.Base(f.Path), " ") })
		has("deep path over the 100-byte ustar limit", func(f File) bool {
			return strings.Count(f.Path, "/") > 20 && len(f.Path) > 100
		})
		has("old mtime", func(f File) bool { return !f.ModTime.IsZero() && f.ModTime.Before(DefaultModTime) })
		many := 0
		for _, f := range data {
			if path.Dir(path.Clean(f.Path)) == TestImageManyDir {
				many++
			}
		}
		if many < 2000 {
			t.Errorf("%s has %d files, want 2000", TestImageManyDir, many)
		}
	})

	t.Run("changes", func(t *testing.T) {
		must(data, TestImageDeleted)
		must(changes, path.Join(path.Dir(TestImageDeleted), ".wh."+path.Base(TestImageDeleted)))
		must(data, TestImageOpaqueDir+"/old-a")
		must(changes, TestImageOpaqueDir+"/.wh..wh..opq")
		must(changes, TestImageOpaqueDir+"/new-file")
		if bytes.Equal(must(data, TestImageOverwrite).Content, must(changes, TestImageOverwrite).Content) {
			t.Errorf("%s is not overwritten", TestImageOverwrite)
		}
		if must(data, TestImageChmod).Mode == must(changes, TestImageChmod).Mode {
			t.Errorf("%s keeps its mode", TestImageChmod)
		}
		if last := changes[len(changes)-1]; last.Path != TestImageChecksumsPath {
			t.Errorf("last entry is %s, want %s", last.Path, TestImageChecksumsPath)
		}
	})

	t.Run("checksums", func(t *testing.T) {
		tree := mergeLayers(layers)
		listed := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(must(changes, TestImageChecksumsPath).Content))
		for sc.Scan() {
			sum, p, ok := strings.Cut(sc.Text(), "  ")
			if !ok || len(sum) != 64 || !strings.HasPrefix(p, "/") {
				t.Fatalf("bad line %q", sc.Text())
			}
			listed[p] = sum
		}
		for p, f := range tree {
			if !f.Mode.IsRegular() || p == TestImageChecksumsPath {
				continue
			}
			h := sha256.Sum256(f.Content)
			if got, ok := listed[p]; !ok {
				t.Errorf("%s not listed", p)
			} else if got != hex.EncodeToString(h[:]) {
				t.Errorf("%s listed as %s", p, got)
			}
			delete(listed, p)
		}
		for p := range listed {
			t.Errorf("%s listed but not in the image", p)
		}
		for _, gone := range []string{TestImageDeleted, TestImageOpaqueDir + "/old-a", "/data/changes/deleted-dir/a"} {
			if _, ok := tree[gone]; ok {
				t.Errorf("%s survives layer 3", gone)
			}
		}
	})
}

// TestTestImageUnpacked unpacks the image with containerd's own applier,
// once flattened and once as overlay lower dirs the way the overlayfs
// snapshotter stacks them, and checks the result from the inside: busybox
// runs and verifies every checksum, and the merged overlay view equals the
// flattened tree under CompareTrees.
func TestTestImageUnpacked(t *testing.T) {
	RequireRoot(t)
	requireTool(t, hostBusybox)
	ctx := context.Background()
	layout := t.TempDir()
	layers := TestImageLayers(hostBusybox)
	if _, err := WriteOCILayout(layout, "test", layers); err != nil {
		t.Fatal(err)
	}
	img := readLayoutImage(t, layout, "test")

	flat := t.TempDir()
	var lowers []string
	for _, l := range img.manifest.Layers {
		applyLayer(ctx, t, layout, l, flat)
		lower := t.TempDir()
		applyLayer(ctx, t, layout, l, lower, archive.WithConvertWhiteout(archive.OverlayConvertWhiteout))
		lowers = append([]string{lower}, lowers...)
	}

	t.Run("checksums in a chroot", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "chroot", flat, "/bin/sh", "-c",
			"set -o pipefail; cd / && sha256sum -c "+TestImageChecksumsPath+" | grep -c ': OK$'").CombinedOutput()
		if err != nil {
			t.Fatalf("sha256sum -c in the image: %v\n%s", err, out)
		}
		want := bytes.Count(findEntry(layers[2], TestImageChecksumsPath).Content, []byte("\n"))
		if got := strings.TrimSpace(string(out)); got != strconv.Itoa(want) || want < 2000 {
			t.Fatalf("sha256sum -c checked %s files, the list has %d", got, want)
		}
	})

	t.Run("attributes", func(t *testing.T) {
		for _, tc := range []struct {
			path string
			mode os.FileMode
		}{
			{"/bin/busybox", 0o755},
			{"/bin/true", 0o755}, // a hard link
			{"/data/links/hardlink", 0o644},
			{"/data/mode/setuid", os.ModeSetuid | 0o755},
			{"/data/mode/sticky-dir", os.ModeDir | os.ModeSticky | 0o777},
			{"/data/special/fifo", os.ModeNamedPipe | 0o644},
			{"/data/special/chardev", os.ModeDevice | os.ModeCharDevice | 0o666},
			{TestImageChmod, 0o755},
			{"/tmp", os.ModeDir | os.ModeSticky | 0o777},
		} {
			fi, err := os.Lstat(filepath.Join(flat, tc.path))
			if err != nil {
				t.Error(err)
			} else if fi.Mode() != tc.mode {
				t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
			}
		}
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(flat, "/data/xattr/file"), "user.lazyfs.color", buf)
		if err != nil || string(buf[:n]) != "blue" {
			t.Errorf("user.lazyfs.color = %q, %v", buf[:n], err)
		}
		for _, gone := range []string{TestImageDeleted, "/data/changes/deleted-dir"} {
			if _, err := os.Lstat(filepath.Join(flat, gone)); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want it deleted", gone, err)
			}
		}
		entries, err := os.ReadDir(filepath.Join(flat, TestImageOpaqueDir))
		if err != nil || len(entries) != 1 || entries[0].Name() != "new-file" {
			t.Errorf("opaque dir holds %v (%v), want only new-file", entries, err)
		}
	})

	t.Run("overlay view equals flat tree", func(t *testing.T) {
		merged := t.TempDir()
		if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
		defer func() {
			if err := unix.Unmount(merged, 0); err != nil {
				t.Errorf("unmount overlay: %v", err)
			}
		}()
		diffs, err := CompareTrees(flat, merged)
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) > 0 {
			t.Errorf("%d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
		}
	})
}

func applyLayer(ctx context.Context, t *testing.T, layout string, desc ocispec.Descriptor, dir string, opts ...archive.ApplyOpt) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(readLayoutBlob(t, layout, desc)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Apply(ctx, dir, zr, opts...); err != nil {
		t.Fatalf("apply %s: %v", desc.Digest, err)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatal(err)
	}
}
