package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// TestImageChecksumsPath is the file of the standard test image that lists
// the sha256 of every regular file in it, in the format of `sha256sum -c`:
// `sha256sum -c /checksums.sha256` inside a container checks every byte.
const TestImageChecksumsPath = "/checksums.sha256"

// Paths of the standard test image that tests refer to.
const (
	TestImageRandomFile = "/data/size/random-8m"       // 8 MiB, incompressible
	TestImageManyDir    = "/data/many"                 // 2000 small files
	TestImageDeleted    = "/data/changes/deleted-file" // whited out by layer 3
	TestImageOpaqueDir  = "/data/changes/opaque"       // made opaque by layer 3
	TestImageOverwrite  = "/data/changes/overwritten"  // replaced by layer 3
	TestImageChmod      = "/data/changes/chmod"        // 0644 in layer 2, 0755 in layer 3
	testImageManyFiles  = 2000
	testImageDeepLevels = 24
)

// testImageApplets are the busybox applets the image links to /bin/busybox:
// symlinks, except testImageHardlinked, which are hard links.
var (
	testImageApplets = []string{
		"[", "ash", "awk", "basename", "cat", "chmod", "chown", "cp", "cut",
		"date", "dd", "df", "diff", "dirname", "du", "echo", "env", "find",
		"grep", "head", "hexdump", "hostname", "id", "kill", "ln", "ls",
		"mkdir", "mkfifo", "mknod", "mount", "mv", "nproc", "od", "printf",
		"ps", "readlink", "realpath", "rm", "sed", "seq", "sh", "sha256sum",
		"sleep", "sort", "stat", "sync", "tail", "tee", "test", "timeout",
		"touch", "tr", "umount", "uname", "uniq", "wc", "which", "whoami",
		"xargs",
	}
	testImageHardlinked = []string{"cmp", "false", "md5sum", "sha1sum", "true"}
)

// TestImageLayers returns the standard three-layer test image.
//
// Layer 1 is a minimal system with no other base: busyboxPath installed as
// /bin/busybox with its applets, /etc/passwd and /etc/group, /tmp (1777)
// and the usual top-level directories. Layer 2 holds generated files under
// /data: sizes (0 B, 1 B, 4 KiB, 1 MiB + 3 B, 8 MiB pseudo-random), odd
// modes (0600, 4755, 0444, a 1777 and a 2755 directory), owners 1000:1000
// and 65534:65534, relative, absolute and dangling symlinks, a hard link, a
// fifo, a character device, user.* xattrs, unicode and spaces in names, a
// deep path and a long name, an old mtime and a directory of 2000 small
// files. Layer 3 whites out a file and a directory, makes a directory
// opaque and adds a file to it, overwrites a file, changes a mode, and adds
// TestImageChecksumsPath covering every regular file that survives.
//
// Every byte is deterministic. It panics if busyboxPath cannot be read:
// tests cannot run without it (Debian's busybox-static is /bin/busybox).
func TestImageLayers(busyboxPath string) []Layer {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		panic(fmt.Sprintf("test image needs a static busybox: %v", err))
	}
	layers := []Layer{testImageBase(bb), testImageData(), testImageChanges()}
	last := len(layers) - 1
	layers[last] = append(layers[last], File{
		Path:    TestImageChecksumsPath,
		Mode:    0o644,
		Content: testImageChecksums(mergeLayers(layers)),
	})
	return layers
}

func testImageBase(busybox []byte) Layer {
	var b layerBuilder
	for _, d := range []string{"/dev", "/proc", "/sys", "/usr", "/usr/bin", "/usr/sbin", "/sbin", "/var", "/run"} {
		b.dir(d, 0o755)
	}
	b.dir("/root", 0o700)
	b.dir("/tmp", 0o777|os.ModeSticky)
	b.dir("/var/tmp", 0o777|os.ModeSticky)
	b.add(File{Path: "/home/user", Mode: os.ModeDir | 0o755, Uid: 1000, Gid: 1000})
	b.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"+
		"user:x:1000:1000:user:/home/user:/bin/sh\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	b.file("/etc/group", 0o644, []byte("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"))
	b.file("/etc/hostname", 0o644, []byte("lazyfs-test\n"))
	b.file("/bin/busybox", 0o755, busybox)
	for _, a := range testImageApplets {
		b.symlink("/bin/"+a, "busybox")
	}
	for _, a := range testImageHardlinked {
		b.add(File{Path: "/bin/" + a, Hardlink: true, Linkname: "/bin/busybox"})
	}
	return b.l
}

func testImageData() Layer {
	var b layerBuilder
	// Sizes around the edges a chunked, lazily read file gets wrong.
	b.file("/data/size/empty", 0o644, nil)
	b.file("/data/size/one-byte", 0o644, []byte("x"))
	b.file("/data/size/4k", 0o644, testImageCounting(4096))
	b.file("/data/size/1m-plus-3", 0o644, testImageText(1<<20+3))
	b.file(TestImageRandomFile, 0o644, testImageRandom(1, 8<<20))

	b.file("/data/mode/0600", 0o600, []byte("owner only\n"))
	b.file("/data/mode/setuid", 0o755|os.ModeSetuid, []byte("#!/bin/sh\necho setuid\n"))
	b.file("/data/mode/readonly", 0o444, []byte("read only\n"))
	b.dir("/data/mode/sticky-dir", 0o777|os.ModeSticky)
	b.file("/data/mode/sticky-dir/inside", 0o666, []byte("in a sticky dir\n"))
	b.dir("/data/mode/setgid-dir", 0o755|os.ModeSetgid)

	b.add(File{Path: "/data/owner/user-1000", Mode: 0o644, Uid: 1000, Gid: 1000, Content: []byte("owned by 1000\n")})
	b.add(File{Path: "/data/owner/nobody", Mode: 0o640, Uid: 65534, Gid: 65534, Content: []byte("owned by nobody\n")})
	b.add(File{Path: "/data/owner/dir-1000", Mode: os.ModeDir | 0o750, Uid: 1000, Gid: 1000})
	b.add(File{Path: "/data/owner/dir-1000/file", Mode: 0o600, Uid: 1000, Gid: 1000, Content: []byte("private\n")})

	b.file("/data/links/target", 0o644, []byte("link target\n"))
	b.symlink("/data/links/relative", "target")
	b.symlink("/data/links/absolute", "/data/links/target")
	b.symlink("/data/links/dangling", "does-not-exist")
	b.symlink("/data/links/to-dir", "../size")
	b.add(File{Path: "/data/links/hardlink", Hardlink: true, Linkname: "/data/links/target"})

	b.add(File{Path: "/data/special/fifo", Mode: os.ModeNamedPipe | 0o644})
	b.add(File{Path: "/data/special/chardev", Mode: os.ModeDevice | os.ModeCharDevice | 0o666, Devmajor: 1, Devminor: 3})

	b.add(File{Path: "/data/xattr/file", Mode: 0o644, Content: []byte("has xattrs\n"),
		Xattrs: map[string]string{"user.lazyfs.color": "blue", "user.lazyfs.number": "42"}})
	b.add(File{Path: "/data/xattr/dir", Mode: os.ModeDir | 0o755,
		Xattrs: map[string]string{"user.lazyfs.dir": "yes"}})

	b.file("/data/names/unicode-é-日本語-😀.txt", 0o644, []byte("unicode name\n"))
	b.file("/data/names/with space.txt", 0o644, []byte("space in name\n"))
	b.file("/data/names/dir with space/file with space", 0o644, []byte("spaces all the way\n"))
	b.file("/data/names/long-"+strings.Repeat("n", 200), 0o644, []byte("long name\n"))
	deep := "/data/deep"
	for i := 1; i <= testImageDeepLevels; i++ {
		deep += fmt.Sprintf("/level-%02d", i)
	}
	b.file(deep+"/deep-file", 0o644, []byte("deep\n"))

	b.add(File{Path: "/data/mtime/old", Mode: 0o644, Content: []byte("old\n"),
		ModTime: time.Date(2001, time.September, 9, 1, 46, 40, 0, time.UTC)})

	for i := range testImageManyFiles {
		b.file(fmt.Sprintf("%s/file-%04d", TestImageManyDir, i), 0o644, fmt.Appendf(nil, "small file %d\n", i))
	}

	// What layer 3 changes.
	b.file(TestImageDeleted, 0o644, []byte("deleted by layer 3\n"))
	b.file("/data/changes/deleted-dir/a", 0o644, []byte("a\n"))
	b.file("/data/changes/deleted-dir/sub/b", 0o644, []byte("b\n"))
	b.file(TestImageOpaqueDir+"/old-a", 0o644, []byte("hidden by opaque\n"))
	b.file(TestImageOpaqueDir+"/old-sub/old-b", 0o644, []byte("hidden by opaque\n"))
	b.file(TestImageOverwrite, 0o644, []byte("version 1 from layer 2\n"))
	b.file(TestImageChmod, 0o644, []byte("mode changes in layer 3\n"))
	b.file("/data/changes/kept", 0o644, []byte("not touched by layer 3\n"))
	return b.l
}

func testImageChanges() Layer {
	var b layerBuilder
	b.dir("/data/changes", 0o755)
	b.file("/data/changes/"+whiteoutPrefix+path.Base(TestImageDeleted), 0o644, nil)
	b.file("/data/changes/"+whiteoutPrefix+"deleted-dir", 0o644, nil)
	b.dir(TestImageOpaqueDir, 0o755)
	b.file(TestImageOpaqueDir+"/"+whiteoutOpaque, 0o644, nil)
	b.file(TestImageOpaqueDir+"/new-file", 0o644, []byte("added by layer 3\n"))
	b.file(TestImageOverwrite, 0o644, testImageText(10_000))
	b.file(TestImageChmod, 0o755, []byte("mode changes in layer 3\n"))
	b.file("/data/changes/added", 0o600, testImageRandom(2, 100_000))
	return b.l
}

// testImageChecksums lists every regular file of tree except the list
// itself, sorted, as `sha256sum` prints them.
func testImageChecksums(tree map[string]File) []byte {
	var paths []string
	for p, f := range tree {
		if f.Mode.IsRegular() && p != TestImageChecksumsPath {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out strings.Builder
	for _, p := range paths {
		sum := sha256.Sum256(tree[p].Content)
		fmt.Fprintf(&out, "%s  %s\n", hex.EncodeToString(sum[:]), p)
	}
	return []byte(out.String())
}

// testImageRandom returns n deterministic, incompressible bytes.
func testImageRandom(seed byte, n int) []byte {
	var key [32]byte
	key[0] = seed
	buf := make([]byte, n)
	// ChaCha8's output for a given seed is fixed by its specification.
	_, _ = rand.NewChaCha8(key).Read(buf)
	return buf
}

// testImageCounting returns n bytes counting through 0..250, so that an
// offset error shows in the data.
func testImageCounting(n int) []byte {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	return buf
}

// testImageText returns n bytes of numbered lines: compressible, and every
// line says where it is.
func testImageText(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d of a lazily loaded file\n", i)
	}
	return []byte(b.String()[:n])
}

// layerBuilder appends entries to a layer, adding every missing parent
// directory (0755, root, DefaultModTime) before its first child.
type layerBuilder struct {
	l    Layer
	seen map[string]bool
}

func (b *layerBuilder) add(f File) {
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	p := path.Clean("/" + f.Path)
	if parent := path.Dir(p); parent != "/" && !b.seen[parent] {
		b.dir(parent, 0o755)
	}
	b.seen[p] = true
	b.l = append(b.l, f)
}

func (b *layerBuilder) dir(p string, perm os.FileMode) {
	b.add(File{Path: p, Mode: os.ModeDir | perm})
}

func (b *layerBuilder) file(p string, perm os.FileMode, content []byte) {
	b.add(File{Path: p, Mode: perm, Content: content})
}

func (b *layerBuilder) symlink(p, target string) {
	b.add(File{Path: p, Mode: os.ModeSymlink | 0o777, Linkname: target})
}
