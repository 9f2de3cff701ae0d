package lazyfs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func openNode(t *testing.T, fs *FS, tree *Tree, p string, flags uint32) fuse.Status {
	t.Helper()
	id, _ := resolve(t, tree, p)
	var out fuse.OpenOut
	return fs.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: uint64(id)}, Flags: flags}, &out)
}

// TestAccessesFirstOpenOrder: the record is the order of first opens, each
// file once, only opens that succeeded, and a reset starts over.
func TestAccessesFirstOpenOrder(t *testing.T) {
	layer := mainLayer(t, 0)
	tree := layer.tree(t)
	fs := NewFS(context.Background(), tree, &blobReader{blob: layer.blob})

	for _, p := range []string{"data/small.txt", "bin/busybox", "data/small.txt", "data/exact"} {
		if st := openNode(t, fs, tree, p, unix.O_RDONLY); st != fuse.OK {
			t.Fatalf("open %s: %v", p, st)
		}
	}
	// Refused opens are no access: a write open, a directory.
	if st := openNode(t, fs, tree, "data/one-less", unix.O_WRONLY); st != fuse.EROFS {
		t.Fatalf("write open: %v", st)
	}
	if st := openNode(t, fs, tree, "data", unix.O_RDONLY); st != fuse.EISDIR {
		t.Fatalf("open of a dir: %v", st)
	}
	// bin/busybox is a hard link of bin/ash: one file, reported under its
	// first name in tree order (estargz moves a link's target with it).
	want := []string{"data/small.txt", "bin/ash", "data/exact"}
	if got := fs.Accesses(); !slices.Equal(got, want) {
		t.Fatalf("Accesses = %q, want %q", got, want)
	}

	fs.ResetAccesses()
	if got := fs.Accesses(); len(got) != 0 {
		t.Fatalf("after reset: %q", got)
	}
	openNode(t, fs, tree, "bin/busybox", unix.O_RDONLY)
	if got := fs.Accesses(); !slices.Equal(got, []string{"bin/ash"}) {
		t.Fatalf("after reset and an open: %q", got)
	}
}

// TestAccessLogBounds: a NodeId beyond the tree is ignored (never a panic
// nor an entry), the last NodeId is recorded, and concurrent first opens
// of one file record it once.
func TestAccessLogBounds(t *testing.T) {
	l := newAccessLog(128) // NodeIds 0..127 fit, with room to 191
	l.record(127)
	l.record(192)
	l.record(1 << 40)
	if got := l.ids(); !slices.Equal(got, []uint32{127}) {
		t.Fatalf("ids = %v, want [127]", got)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() { defer wg.Done(); l.record(5) }()
	}
	wg.Wait()
	if got := l.ids(); !slices.Equal(got, []uint32{127, 5}) {
		t.Fatalf("ids after concurrent opens = %v, want [127 5]", got)
	}
}

// TestAccessesRecordTheLastNode: the record has room for every NodeId of
// the tree, the last one included, in a fresh record and after a reset (63
// files and the root: the last NodeId, 64, starts a second word of bits).
func TestAccessesRecordTheLastNode(t *testing.T) {
	var entries []*estargz.TOCEntry
	for i := range 63 {
		entries = append(entries, &estargz.TOCEntry{Name: fmt.Sprintf("f%02d", i), Type: "reg", Mode: 0o644})
	}
	tree := mustTree(t, entries, 100)
	fs := NewFS(context.Background(), tree, fill)
	for _, reset := range []bool{false, true} {
		if reset {
			fs.ResetAccesses()
		}
		if st := openNode(t, fs, tree, "f62", unix.O_RDONLY); st != fuse.OK {
			t.Fatalf("open f62: %v", st)
		}
		if got := fs.Accesses(); !slices.Equal(got, []string{"f62"}) {
			t.Errorf("reset %v: accesses %q, want f62 (NodeId %d)", reset, got, tree.Len())
		}
	}
}
