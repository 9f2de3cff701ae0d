package lazyfs

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestTreeArrayBounds pins each bound on the tree's 32-bit indexed arrays
// at its edge (maxIndex lowered to 4, as four billion entries cannot be
// built): the most a tree may hold is accepted, one more is refused as
// invalid, naming what there is too much of.
func TestTreeArrayBounds(t *testing.T) {
	saved := maxIndex
	maxIndex = 4
	t.Cleanup(func() { maxIndex = saved })

	root := dirEntry("./")
	hardlinks := func(n int) []*estargz.TOCEntry {
		out := []*estargz.TOCEntry{root, reg("f", 1, 10, 1)}
		for i := range n {
			out = append(out, &estargz.TOCEntry{Name: fmt.Sprintf("h%d", i), Type: "hardlink", LinkName: "f"})
		}
		return out
	}
	chunked := func(n int) []*estargz.TOCEntry {
		out := []*estargz.TOCEntry{root, {Name: "f", Type: "reg", Size: int64(10 * n), Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(0)}}
		for i := 1; i < n; i++ {
			out = append(out, &estargz.TOCEntry{Name: "f", Type: "chunk", Offset: int64(10 + 10*i), ChunkOffset: int64(10 * i), ChunkSize: 10, ChunkDigest: testDigest(i)})
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		most, more []*estargz.TOCEntry
		why        string
	}{
		// recs[0] is unused: three nodes fill four.
		{"nodes", []*estargz.TOCEntry{root, dirEntry("a/"), dirEntry("b/")}, []*estargz.TOCEntry{root, dirEntry("a/"), dirEntry("b/"), dirEntry("c/")}, "too many entries"},
		// Counted with the nodes: root, f and h0 fill four.
		{"hard links", hardlinks(1), hardlinks(2), "too many entries"},
		// The root and "a" implied, or also "a/b".
		{"implied directories", []*estargz.TOCEntry{dirEntry("a/f/")}, []*estargz.TOCEntry{dirEntry("a/b/f/")}, "implies too many directories"},
		{"chunks", chunked(4), chunked(5), "too many chunks"},
		{"name bytes", []*estargz.TOCEntry{root, dirEntry("abcd/")}, []*estargz.TOCEntry{root, dirEntry("abcde/")}, "names of the TOC take 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewTree(&estargz.JTOC{Version: 1, Entries: tc.most}, 1000); err != nil {
				t.Errorf("the most a tree holds refused: %v", err)
			}
			_, err := NewTree(&estargz.JTOC{Version: 1, Entries: tc.more}, 1000)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("one more: %v; want invalid argument naming %q", err, tc.why)
			}
		})
	}
}

// TestTreeChunkDigests: a chunk digest is served only if it is one: the
// sha256 fast path accepts every lowercase hex digit and refuses the
// characters next to them, a wrong length and an unknown algorithm, as
// go-digest does.
func TestTreeChunkDigests(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	with := func(c byte) string { return "sha256:" + hex[:63] + string(c) }
	for _, tc := range []struct {
		digest string
		ok     bool
	}{
		{"sha256:" + hex, true},
		{"sha512:" + hex + hex, true},
		{with('/'), false}, // before '0'
		{with(':'), false}, // after '9'
		{with('`'), false}, // before 'a'
		{with('g'), false}, // after 'f'
		{with('A'), false},
		{"sha256:" + hex[:63], false},
		{"sha256:" + hex + "0", false},
		{"sha999:" + hex, false},
		{"sha256" + hex + "0", false},
	} {
		e := reg("f", 4, 10, 0)
		e.ChunkDigest = tc.digest
		tr, err := NewTree(&estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{e}}, 100)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s refused: %v", tc.digest, err)
		case tc.ok && string(tr.chunks[0].Digest) != tc.digest:
			t.Errorf("%s kept as %s", tc.digest, tr.chunks[0].Digest)
		case !tc.ok && !errors.Is(err, errdefs.ErrInvalidArgument):
			t.Errorf("%s: %v; want invalid argument", tc.digest, err)
		}
	}
}

// TestTreeBuilderExpect: Expect only makes room. Called after the first
// Add it keeps what was added; a negative estimate is none; a builder
// given no entry at all builds the tree of a bare root.
func TestTreeBuilderExpect(t *testing.T) {
	var b TreeBuilder
	b.Expect(-1)
	if err := b.Add(dirEntry("a/")); err != nil {
		t.Fatal(err)
	}
	b.Expect(10)
	if err := b.Add(dirEntry("b/")); err != nil {
		t.Fatal(err)
	}
	tr, err := b.Tree(100)
	if err != nil {
		t.Fatal(err)
	}
	if got := listing(tr, &tr.nodes[rootID]); strings.Join(got, " ") != "a b" {
		t.Errorf("root lists %q, want a and b", got)
	}

	var empty TreeBuilder
	tr, err = empty.Tree(100)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 1 || !tr.nodes[rootID].isDir() || len(listing(tr, &tr.nodes[rootID])) != 0 {
		t.Errorf("tree without entries: %d nodes, root %+v", tr.Len(), tr.nodes[rootID])
	}
}

// TestTreeRefusalNamesTheEntry: a refusal names the entry at fault where a
// later check would refuse another under another name.
func TestTreeRefusalNamesTheEntry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []*estargz.TOCEntry
		why     string
	}{
		// Without its own check, the file would be refused at the end of
		// its chunk list, as covering more bytes than its size.
		{"a later chunk past the size", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkSize: 15, ChunkDigest: testDigest(2)},
		}, `TOC entry 1 ("f"): chunk [10, +15) does not continue the file at 10`},
		// The root exists: it is no file.
		{"hard link to the root", []*estargz.TOCEntry{dirEntry("./"), {Name: "g", Type: "hardlink", LinkName: "/"}}, `hard link target "" is not a file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTree(&estargz.JTOC{Version: 1, Entries: tc.entries}, 100)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("NewTree = %v; want invalid argument naming %q", err, tc.why)
			}
		})
	}
}

// TestTreeDeviceZero: major and minor 0 are device numbers like others (a
// whiteout is one), not out of range.
func TestTreeDeviceZero(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		{Name: "c", Type: "char", Mode: 0o600, DevMajor: 0, DevMinor: 0},
		{Name: "b", Type: "block", Mode: 0o600, DevMajor: 0, DevMinor: 7},
	}, 100)
	for p, want := range map[string]uint32{"c": 0, "b": 7} {
		id, n := resolve(t, tr, p)
		var a fuse.Attr
		tr.fillAttr(uint64(id), n, &a)
		if a.Rdev != want {
			t.Errorf("%s: rdev %d, want %d", p, a.Rdev, want)
		}
	}
}

// TestTreeOpaqueRoot: an opaque marker at the root makes the root opaque
// (a layer that replaces everything below it).
func TestTreeOpaqueRoot(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{{Name: ".wh..wh..opq", Type: "reg", Mode: 0o644}, dirEntry("d/")}, 100)
	if !tr.isOpaque(rootID) {
		t.Error("root not opaque")
	}
	if got := listing(tr, &tr.nodes[rootID]); strings.Join(got, " ") != "d" {
		t.Errorf("root lists %q, want d alone", got)
	}
}

// TestCleanPathOfACleanNameAllocatesNothing: NewTree cleans every name of
// a layer; one already clean (what eStargz writes) must cost no copy.
func TestCleanPathOfACleanNameAllocatesNothing(t *testing.T) {
	for _, name := range []string{"a", "usr/lib/x86_64-linux-gnu/libc.so.6", "./etc/", "/bin/sh"} {
		if n := testing.AllocsPerRun(10, func() { _ = cleanPath(name) }); n != 0 {
			t.Errorf("cleanPath(%q): %v allocations", name, n)
		}
	}
}
