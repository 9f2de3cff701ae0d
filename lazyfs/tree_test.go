package lazyfs

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

// testDigest returns a well-formed digest that differs for every i.
func testDigest(i int) string {
	return fmt.Sprintf("sha256:%064x", i)
}

// reg is a single-chunk regular file entry.
func reg(name string, size, offset int64, i int) *estargz.TOCEntry {
	return &estargz.TOCEntry{Name: name, Type: "reg", Size: size, Offset: offset, Mode: 0o644, ChunkDigest: testDigest(i)}
}

func dirEntry(name string) *estargz.TOCEntry {
	return &estargz.TOCEntry{Name: name, Type: "dir", Mode: 0o755}
}

// mustTree builds a tree or fails the test.
func mustTree(t *testing.T, entries []*estargz.TOCEntry, tocOffset int64) *Tree {
	t.Helper()
	tr, err := NewTree(&estargz.JTOC{Version: 1, Entries: entries}, tocOffset)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// resolve walks a clean path from the root.
func resolve(t *testing.T, tr *Tree, p string) (uint32, *node) {
	t.Helper()
	id := uint32(rootID)
	if p != "" {
		for rest := p; rest != ""; {
			name := rest
			if i := indexSlash(rest); i >= 0 {
				name, rest = rest[:i], rest[i+1:]
			} else {
				rest = ""
			}
			next, ok := tr.lookup(tr.node(uint64(id)), name)
			if !ok {
				t.Fatalf("%q: %q not found", p, name)
			}
			id = next
		}
	}
	return id, tr.node(uint64(id))
}

func indexSlash(s string) int {
	for i := range len(s) {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// listing returns the names of a directory in order.
func listing(tr *Tree, n *node) []string {
	var names []string
	for _, d := range tr.children(n) {
		names = append(names, tr.name(d))
	}
	return names
}

func TestTreeIDsFollowSortedPaths(t *testing.T) {
	root := dirEntry("./")
	root.ModTime3339 = "2024-05-06T07:08:09Z"
	root.Mode = 0o700
	tr := mustTree(t, []*estargz.TOCEntry{
		root,
		reg("a/b/c.txt", 3, 100, 1), // a and a/b are implied
		dirEntry("z/"),
		reg("a-b", 2, 200, 2), // sorts before "a/…": '-' < '/'
	}, 1000)

	want := map[string]uint32{"": 1, "a": 2, "a-b": 3, "a/b": 4, "a/b/c.txt": 5, "z": 6}
	for p, wantID := range want {
		if id, _ := resolve(t, tr, p); id != wantID {
			t.Errorf("%q: NodeId %d, want %d", p, id, wantID)
		}
	}
	if tr.Len() != len(want) {
		t.Errorf("Len = %d, want %d", tr.Len(), len(want))
	}
	if got := listing(tr, tr.node(rootID)); !reflect.DeepEqual(got, []string{"a", "a-b", "z"}) {
		t.Errorf("root lists %q", got)
	}

	_, a := resolve(t, tr, "a")
	var attr fuse.Attr
	tr.fillAttr(2, a, &attr)
	if attr.Mode != syscall.S_IFDIR|0o755 || attr.Uid != 0 || attr.Gid != 0 {
		t.Errorf("implied dir: mode %o uid %d gid %d", attr.Mode, attr.Uid, attr.Gid)
	}
	if attr.Mtime != 1714979289 {
		t.Errorf("implied dir mtime %d, want the root's", attr.Mtime)
	}
	_, r := resolve(t, tr, "")
	if r.mode != syscall.S_IFDIR|0o700 {
		t.Errorf("root mode %o, want the TOC's", r.mode)
	}
	// nlink of a directory: 2 + subdirectories.
	if r.nlink != 4 || a.nlink != 3 {
		t.Errorf("nlink root %d a %d, want 4 and 3", r.nlink, a.nlink)
	}
	if a.parent != rootID {
		t.Errorf("parent of a = %d", a.parent)
	}
}

func TestTreeImpliedRootWithoutTimestamp(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{reg("f", 1, 10, 1)}, 20)
	_, r := resolve(t, tr, "")
	if r.mode != syscall.S_IFDIR|0o755 || r.mtime != 0 {
		t.Errorf("implied root: mode %o mtime %d", r.mode, r.mtime)
	}
}

func TestTreeLoadedTwiceIsIdentical(t *testing.T) {
	entries := func() []*estargz.TOCEntry {
		return []*estargz.TOCEntry{
			dirEntry("etc/"),
			reg("etc/passwd", 10, 100, 1),
			{Name: "etc/hosts", Type: "hardlink", LinkName: "etc/passwd"},
			{Name: "usr/bin/sh", Type: "symlink", LinkName: "busybox"},
			reg("usr/bin/busybox", 5, 200, 2),
			{Name: "var/.wh.cache", Type: "reg"},
			{Name: "opt/.wh..wh..opq", Type: "reg"},
			{Name: "dev/null", Type: "char", DevMajor: 1, DevMinor: 3},
		}
	}
	a := mustTree(t, entries(), 1000)
	b := mustTree(t, entries(), 1000)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same TOC gave two different trees")
	}
	// And in another TOC order, ids still follow the paths.
	e := entries()
	e[0], e[7] = e[7], e[0]
	c := mustTree(t, e, 1000)
	for _, p := range []string{"etc", "etc/passwd", "etc/hosts", "usr/bin/sh", "var/cache", "opt", "dev/null"} {
		ia, _ := resolve(t, a, p)
		ic, _ := resolve(t, c, p)
		if ia != ic {
			t.Errorf("%q: NodeId %d vs %d after reordering the TOC", p, ia, ic)
		}
	}
}

func TestTreeWhiteoutsAndOpaqueDirs(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		{Name: ".wh.gone", Type: "reg", UID: 7, GID: 8},
		dirEntry("opq/"),
		{Name: "opq/.wh..wh..opq", Type: "reg"},
		reg("opq/kept", 1, 10, 1),
		{Name: "implied/.wh..wh..opq", Type: "reg"}, // opaque and implied
		{Name: ".wh.both", Type: "reg"},
		reg("both", 1, 20, 2), // the layer's own file wins over its whiteout
		{Name: ".wh.redone", Type: "reg"},
		dirEntry("redone/"), // deleted below, recreated here: opaque
		{Name: ".wh..wh.plnk/123", Type: "reg"},
		{Name: "sub/.wh..wh.aufs", Type: "reg"},
		reg("sub/file", 1, 30, 3),
	}, 100)

	if got := listing(tr, tr.node(rootID)); !reflect.DeepEqual(got, []string{"both", "gone", "implied", "opq", "redone", "sub"}) {
		t.Errorf("root lists %q", got)
	}
	_, gone := resolve(t, tr, "gone")
	var a fuse.Attr
	tr.fillAttr(0, gone, &a)
	if a.Mode != syscall.S_IFCHR || a.Rdev != 0 || a.Uid != 7 || a.Gid != 8 {
		t.Errorf("whiteout: mode %o rdev %d uid %d gid %d, want a 0/0 char device owned by 7:8", a.Mode, a.Rdev, a.Uid, a.Gid)
	}
	if _, both := resolve(t, tr, "both"); !both.isRegular() {
		t.Errorf("both: mode %o, want the regular file", both.mode)
	}
	for p, want := range map[string]bool{"opq": true, "implied": true, "redone": true, "both": false, "sub": false, "": false} {
		id, _ := resolve(t, tr, p)
		if got := tr.isOpaque(uint64(id)); got != want {
			t.Errorf("%q opaque = %v, want %v", p, got, want)
		}
	}
	// A NodeId past 32 bits names no node, whatever its low bits say
	// (the kernel's NodeIds are 64-bit; the tree's are 32).
	if id, _ := resolve(t, tr, "opq"); tr.isOpaque(1<<32 | uint64(id)) {
		t.Errorf("NodeId %#x is opaque: its low 32 bits are opq's", 1<<32|uint64(id))
	}
	_, opq := resolve(t, tr, "opq")
	if got := listing(tr, opq); !reflect.DeepEqual(got, []string{"kept"}) {
		t.Errorf("opq lists %q", got)
	}
	_, sub := resolve(t, tr, "sub")
	if got := listing(tr, sub); !reflect.DeepEqual(got, []string{"file"}) {
		t.Errorf("sub lists %q", got)
	}
}

func TestTreeHidesBookkeepingAtRootOnly(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		reg(estargz.NoPrefetchLandmark, 1, 10, 1),
		reg("./"+estargz.PrefetchLandmark, 1, 20, 2),
		reg(estargz.TOCTarName, 1, 30, 3),
		reg("d/"+estargz.PrefetchLandmark, 1, 40, 4),
		reg("d/"+estargz.TOCTarName, 1, 50, 5),
	}, 100)
	if got := listing(tr, tr.node(rootID)); !reflect.DeepEqual(got, []string{"d"}) {
		t.Errorf("root lists %q", got)
	}
	_, d := resolve(t, tr, "d")
	if got := listing(tr, d); len(got) != 2 {
		t.Errorf("d lists %q, want both files", got)
	}
}

func TestTreeHardLinks(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		reg("f", 4, 10, 1),
		{Name: "g", Type: "hardlink", LinkName: "f"},
		{Name: "dir/h", Type: "hardlink", LinkName: "./g"}, // a link to a link
	}, 100)
	idF, f := resolve(t, tr, "f")
	idG, _ := resolve(t, tr, "g")
	idH, _ := resolve(t, tr, "dir/h")
	if idF != idG || idF != idH {
		t.Errorf("NodeIds f %d g %d h %d, want one", idF, idG, idH)
	}
	if f.nlink != 3 {
		t.Errorf("nlink %d, want 3", f.nlink)
	}
	if tr.Len() != 3 { // root, dir, f
		t.Errorf("Len = %d, want 3", tr.Len())
	}
	if got := tr.path(idF); got != "dir/h" && got != "f" && got != "g" {
		t.Errorf("path(%d) = %q", idF, got)
	}
}

func TestTreeXattrs(t *testing.T) {
	f := reg("f", 1, 10, 1)
	f.Xattrs = map[string][]byte{
		"user.b":                 []byte("2"),
		"user.a":                 []byte("1"),
		"security.capability":    {0, 1},
		"trusted.overlay.opaque": []byte("y"),
		"trusted.other":          []byte("x"),
	}
	d := dirEntry("d/")
	d.Xattrs = map[string][]byte{"trusted.overlay.opaque": []byte("y")}
	tr := mustTree(t, []*estargz.TOCEntry{f, d}, 100)
	_, n := resolve(t, tr, "f")
	var names []string
	for _, x := range tr.nodeXattrs(n) {
		names = append(names, x.name)
	}
	if want := []string{"security.capability", "user.a", "user.b"}; !reflect.DeepEqual(names, want) {
		t.Errorf("xattrs %q, want %q", names, want)
	}
	// A trusted.overlay.opaque stored in the layer does not make a
	// directory opaque: only the whiteout marker does.
	idD, nd := resolve(t, tr, "d")
	if tr.isOpaque(uint64(idD)) || len(tr.nodeXattrs(nd)) != 0 {
		t.Error("trusted.* xattr of the layer passed through")
	}
}

func TestTreeNodeKinds(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		{Name: "c", Type: "char", DevMajor: 136, DevMinor: 300, Mode: 0o620},
		{Name: "b", Type: "block", DevMajor: 8, DevMinor: 1, Mode: 0o660},
		{Name: "p", Type: "fifo", Mode: 0o600},
		{Name: "l", Type: "symlink", LinkName: "../target", Mode: 0o644},
		{Name: "s", Type: "reg", Mode: 0o4755, Size: 0},
		{Name: "t/", Type: "dir", Mode: 0o1777, UID: 1000, GID: 1001, ModTime3339: "2001-02-03T04:05:06.5Z"},
	}, 100)
	for _, tc := range []struct {
		path  string
		mode  uint32
		rdev  uint32
		size  uint64
		mtime uint64
		nsec  uint32
	}{
		{"c", syscall.S_IFCHR | 0o620, 136<<8 | 300&0xff | (300&^0xff)<<12, 0, 0, 0},
		{"b", syscall.S_IFBLK | 0o660, 8<<8 | 1, 0, 0, 0},
		{"p", syscall.S_IFIFO | 0o600, 0, 0, 0, 0},
		{"l", syscall.S_IFLNK | 0o777, 0, 9, 0, 0},
		{"s", syscall.S_IFREG | 0o4755, 0, 0, 0, 0},
		{"t", syscall.S_IFDIR | 0o1777, 0, dirSize, 981173106, 5e8},
	} {
		id, n := resolve(t, tr, tc.path)
		var a fuse.Attr
		tr.fillAttr(uint64(id), n, &a)
		if a.Mode != tc.mode || a.Rdev != tc.rdev || a.Size != tc.size || a.Mtime != tc.mtime || a.Mtimensec != tc.nsec || a.Ino != uint64(id) {
			t.Errorf("%s: mode %o rdev %#x size %d mtime %d.%d ino %d", tc.path, a.Mode, a.Rdev, a.Size, a.Mtime, a.Mtimensec, a.Ino)
		}
	}
	_, tn := resolve(t, tr, "t")
	if tn.uid != 1000 || tn.gid != 1001 {
		t.Errorf("t owner %d:%d", tn.uid, tn.gid)
	}
	_, l := resolve(t, tr, "l")
	if target, ok := tr.linkTarget(l); !ok || target != "../target" {
		t.Errorf("link target %q %v", target, ok)
	}
}

func TestTreeChunkSpans(t *testing.T) {
	big := &estargz.TOCEntry{Name: "big", Type: "reg", Size: 250, Offset: 100, ChunkSize: 100, ChunkDigest: testDigest(1), Mode: 0o644}
	tr := mustTree(t, []*estargz.TOCEntry{
		dirEntry("d/"),
		big,
		{Name: "big", Type: "chunk", Offset: 180, ChunkOffset: 100, ChunkSize: 100, ChunkDigest: testDigest(2)},
		{Name: "big", Type: "chunk", Offset: 260, ChunkOffset: 200, ChunkDigest: testDigest(3)}, // size to the end
		// Two chunks in one compressed stream (zstd:chunked style).
		{Name: "shared", Type: "reg", Size: 20, Offset: 300, ChunkSize: 10, ChunkDigest: testDigest(4)},
		{Name: "shared", Type: "chunk", Offset: 300, InnerOffset: 10, ChunkOffset: 10, ChunkSize: 10, ChunkDigest: testDigest(5)},
		// A single chunk with only the file digest.
		{Name: "one", Type: "reg", Size: 7, Offset: 350, Digest: testDigest(6)},
		{Name: "empty", Type: "reg", Size: 0},
	}, 400)

	for _, tc := range []struct {
		path string
		want []chunks.Chunk
	}{
		{"big", []chunks.Chunk{
			{Offset: 0, Size: 100, BlobOffset: 100, BlobSize: 80, Digest: testDigestD(1)},
			{Offset: 100, Size: 100, BlobOffset: 180, BlobSize: 80, Digest: testDigestD(2)},
			{Offset: 200, Size: 50, BlobOffset: 260, BlobSize: 40, Digest: testDigestD(3)},
		}},
		{"shared", []chunks.Chunk{
			{Offset: 0, Size: 10, BlobOffset: 300, BlobSize: 50, Digest: testDigestD(4)},
			{Offset: 10, Size: 10, BlobOffset: 300, BlobSize: 50, InnerOffset: 10, Digest: testDigestD(5)},
		}},
		{"one", []chunks.Chunk{{Offset: 0, Size: 7, BlobOffset: 350, BlobSize: 50, Digest: testDigestD(6)}}},
		{"empty", nil},
	} {
		_, n := resolve(t, tr, tc.path)
		got := tr.fileChunks(n)
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s chunks:\n got %+v\nwant %+v", tc.path, got, tc.want)
		}
	}
	if tr.dataBytes != 250+20+7 {
		t.Errorf("dataBytes %d", tr.dataBytes)
	}
}

func TestTreeRefusesOddInput(t *testing.T) {
	ok := func() *estargz.TOCEntry { return reg("f", 4, 10, 1) }
	for _, tc := range []struct {
		name    string
		entries []*estargz.TOCEntry
		toc     int64
	}{
		{"null entry", []*estargz.TOCEntry{nil}, 100},
		{"chunk first", []*estargz.TOCEntry{{Name: "f", Type: "chunk"}}, 100},
		{"chunk after dir", []*estargz.TOCEntry{dirEntry("d"), {Name: "d", Type: "chunk"}}, 100},
		{"unknown type", []*estargz.TOCEntry{{Name: "s", Type: "socket"}}, 100},
		{"duplicate", []*estargz.TOCEntry{ok(), reg("./f", 4, 20, 2)}, 100},
		{"root is a file", []*estargz.TOCEntry{{Name: "./", Type: "reg"}}, 100},
		{"parent is a file", []*estargz.TOCEntry{ok(), reg("f/g", 1, 20, 2)}, 100},
		{"opaque in a file", []*estargz.TOCEntry{ok(), {Name: "f/.wh..wh..opq", Type: "reg"}}, 100},
		{"hard link to nothing", []*estargz.TOCEntry{{Name: "g", Type: "hardlink", LinkName: "f"}}, 100},
		{"hard link cycle", []*estargz.TOCEntry{{Name: "g", Type: "hardlink", LinkName: "h"}, {Name: "h", Type: "hardlink", LinkName: "g"}}, 100},
		{"hard link to dir", []*estargz.TOCEntry{dirEntry("d"), {Name: "g", Type: "hardlink", LinkName: "d"}}, 100},
		{"hard link to hidden", []*estargz.TOCEntry{reg(estargz.PrefetchLandmark, 1, 10, 1), {Name: "g", Type: "hardlink", LinkName: estargz.PrefetchLandmark}}, 100},
		{"bad mtime", []*estargz.TOCEntry{{Name: "d", Type: "dir", ModTime3339: "yesterday"}}, 100},
		{"negative uid", []*estargz.TOCEntry{{Name: "d", Type: "dir", UID: -1}}, 100},

		{"device out of range", []*estargz.TOCEntry{{Name: "c", Type: "char", DevMajor: 5000}}, 100},
		{"symlink without target", []*estargz.TOCEntry{{Name: "l", Type: "symlink"}}, 100},
		{"whiteout of nothing", []*estargz.TOCEntry{{Name: "d/.wh.", Type: "reg"}}, 100},
		{"whiteout of the directory itself", []*estargz.TOCEntry{{Name: "d/.wh..", Type: "reg"}}, 100},
		{"whiteout of the parent", []*estargz.TOCEntry{{Name: "d/.wh...", Type: "reg"}}, 100},
		{"no digest", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10}}, 100},
		{"bad digest", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:xyz"}}, 100},
		{"chunk past the TOC", []*estargz.TOCEntry{ok()}, 10},
		{"chunk without offset", []*estargz.TOCEntry{reg("f", 4, 0, 1)}, 100},
		{"chunk gap", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 11, ChunkDigest: testDigest(2)},
		}, 100},
		{"chunks short of the size", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
		}, 100},
		{"chunk past the size", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 5, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
		}, 100},
		{"negative inner offset", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 5, Offset: 10, InnerOffset: -1, ChunkDigest: testDigest(1)},
		}, 100},
		// Chunk lists whose sizes add up to the file's, with one chunk
		// out of place: each chunk must start where the last ended.
		{"overlapping chunks", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 5, ChunkSize: 10, ChunkDigest: testDigest(2)},
		}, 100},
		{"a negative chunk made up by the next", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkSize: -5, ChunkDigest: testDigest(2)},
			{Name: "f", Type: "chunk", Offset: 30, ChunkOffset: 5, ChunkSize: 15, ChunkDigest: testDigest(3)},
		}, 100},
		{"an empty chunk at the end", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 10, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkDigest: testDigest(2)},
		}, 100},
		// Another entry's offset past the TOC would stretch the last
		// chunk's compressed stream over the TOC, up to that offset.
		{"an entry's offset past the TOC", []*estargz.TOCEntry{reg("f", 4, 10, 1), {Name: "d", Type: "dir", Offset: 200}}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTree(&estargz.JTOC{Version: 1, Entries: tc.entries}, tc.toc)
			if err == nil {
				t.Fatal("NewTree accepted it")
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not ErrInvalidArgument", err)
			}
		})
	}
	if _, err := NewTree(nil, 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil TOC: %v", err)
	}
}

// TestTreeRefusalNamesTheCause pins the reason of refusals that a later
// check would repeat under another name: the error an operator reads must
// say what is wrong with the entry, not what went wrong next.
func TestTreeRefusalNamesTheCause(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry *estargz.TOCEntry
		why   string
	}{
		// Without its own check, the chunk list of a negative size
		// refuses the file as a chunk that does not continue it.
		{"negative size", &estargz.TOCEntry{Name: "f", Type: "reg", Size: -1, Offset: 10, ChunkDigest: testDigest(1)}, "negative size -1"},
		{"negative size with a chunk size", &estargz.TOCEntry{Name: "f", Type: "reg", Size: -5, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)}, "negative size -5"},
		// The file's own check comes before the one at the end of its
		// chunk list, which names no chunk.
		{"chunk past the size", &estargz.TOCEntry{Name: "f", Type: "reg", Size: 5, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)}, "chunk [0, +10) does not continue the file"},
		// The chunk's own check names its entry; the blob's bound
		// after it names only an offset.
		{"chunk at blob offset 0", reg("f", 4, 0, 1), `TOC entry 0 ("f"): chunk offset 0 outside`},
		{"chunk at a negative blob offset", reg("f", 4, -3, 1), `TOC entry 0 ("f"): chunk offset -3 outside`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTree(&estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{tc.entry}}, 100)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("NewTree = %v; want invalid argument naming %q", err, tc.why)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":          "",
		".":         "",
		"./":        "",
		"/":         "",
		"a":         "a",
		"a/":        "a",
		"./a/b/":    "a/b",
		"/./a":      "a",
		"a//b":      "a/b",
		"a/./b":     "a/b",
		"a/../b":    "b",
		"../../a":   "a",
		"a/b/..":    "a",
		".wh.x":     ".wh.x",
		"a/.hidden": "a/.hidden",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func testDigestD(i int) digest.Digest { return digest.Digest(testDigest(i)) }

// TestTreeBuilderReusedEntry builds trees from entries handed one at a
// time through a single TOCEntry that is overwritten after each Add, as
// a decoder streaming a TOC does: the tree must be NewTree's, whatever
// room the builder was told to expect, so it keeps nothing of the entry
// but its strings and xattr values.
func TestTreeBuilderReusedEntry(t *testing.T) {
	toc, tocOffset := bigTOC(3000)
	toc.Entries = append(toc.Entries,
		&estargz.TOCEntry{Name: "x/.wh.gone", Type: "reg", ModTime3339: "2024-01-02T03:04:05Z"},
		&estargz.TOCEntry{Name: "x/both", Type: "reg", Mode: 0o600},
		&estargz.TOCEntry{Name: "x/.wh.both", Type: "reg"},
		&estargz.TOCEntry{Name: "x/dev", Type: "char", DevMajor: 1, DevMinor: 3, Xattrs: map[string][]byte{"user.a": []byte("1"), "trusted.b": []byte("2")}},
		&estargz.TOCEntry{Name: "y/.wh..wh..opq", Type: "reg"},
	)
	want, err := NewTree(toc, tocOffset)
	if err != nil {
		t.Fatal(err)
	}
	for _, expect := range []int{0, 10, len(toc.Entries), 4 * len(toc.Entries)} {
		var b TreeBuilder
		b.Expect(expect)
		var e estargz.TOCEntry
		for _, src := range toc.Entries {
			e = *src
			if err := b.Add(&e); err != nil {
				t.Fatal(err)
			}
			// What a decoder does before the next entry.
			e = estargz.TOCEntry{Name: "overwritten", Type: "dir", ChunkDigest: "sha256:x"}
		}
		got, err := b.Tree(tocOffset)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("expecting %d entries: the streamed tree differs from NewTree's", expect)
		}
		if _, err := b.Tree(tocOffset); err == nil {
			t.Error("a builder built a second tree")
		}
	}
}

// TestTreeBuilderKeepsFirstError checks that an entry NewTree refuses stops
// the builder: later entries and Tree return the same error.
func TestTreeBuilderKeepsFirstError(t *testing.T) {
	var b TreeBuilder
	first := b.Add(&estargz.TOCEntry{Name: "s", Type: "socket"})
	if !errors.Is(first, errdefs.ErrInvalidArgument) {
		t.Fatalf("Add = %v, want invalid argument", first)
	}
	if err := b.Add(dirEntry("d/")); err != first {
		t.Errorf("Add after an error = %v, want %v", err, first)
	}
	if tr, err := b.Tree(100); tr != nil || err != first {
		t.Errorf("Tree after an error = %v, %v; want %v", tr, err, first)
	}
}

// TestTreeBuilderEntryBound pins the builder's bound on the number of
// entries (NodeIds and TOC indexes are 32-bit) at its edge, without
// adding two billion entries: the builder is set to have seen them.
func TestTreeBuilderEntryBound(t *testing.T) {
	b := TreeBuilder{n: math.MaxInt32 - 1}
	if err := b.Add(dirEntry("d/")); err != nil {
		t.Fatalf("entry %d: %v", math.MaxInt32-1, err)
	}
	if err := b.Add(dirEntry("e/")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("entry %d: %v, want invalid argument", math.MaxInt32, err)
	}
}
