package lazyfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// direntNames decodes the names of a READDIR (or READDIRPLUS) reply that
// starts at offset off: each fuse_dirent (after a fuse_entry_out for
// READDIRPLUS) is ino, off, namelen, type and the name, padded to 8 bytes.
// Each entry's off must be where the next listing starts (the kernel's
// next READDIR asks for it: a wrong one lists forever or skips entries).
func direntNames(t *testing.T, b []byte, off uint64, plus bool) []string {
	t.Helper()
	var names []string
	for len(b) > 0 {
		if plus {
			b = b[unsafe.Sizeof(fuse.EntryOut{}):]
		}
		n := int(binary.NativeEndian.Uint32(b[16:]))
		name := string(b[24 : 24+n])
		off++
		if got := binary.NativeEndian.Uint64(b[8:]); got != off {
			t.Fatalf("%q has off %d, want %d", name, got, off)
		}
		names = append(names, name)
		b = b[min(len(b), (24+n+7)&^7):]
	}
	return names
}

// TestReadDirPages: a directory listing fills each reply with as many
// entries as fit and goes on where the last reply stopped, so that a
// directory larger than a reply is listed whole, each name once, with
// READDIR and READDIRPLUS alike.
func TestReadDirPages(t *testing.T) {
	var entries []*estargz.TOCEntry
	want := []string{".", ".."}
	for i := range 40 {
		name := fmt.Sprintf("file-with-a-long-name-%02d", i)
		entries = append(entries, &estargz.TOCEntry{Name: name, Type: "reg", Mode: 0o644})
		want = append(want, name)
	}
	tr := mustTree(t, entries, 100)
	fs := NewFS(logtest.WithT(context.Background(), t), tr, fill)
	for _, plus := range []bool{false, true} {
		t.Run(fmt.Sprintf("plus=%v", plus), func(t *testing.T) {
			read := func(off uint64, size int) []string {
				list := fuse.NewDirEntryList(make([]byte, size), off)
				in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: rootID}, Offset: off}
				op := fs.ReadDir
				if plus {
					op = fs.ReadDirPlus
				}
				st := op(nil, in, list)
				if st != fuse.OK {
					t.Fatalf("at %d: %v", off, st)
				}
				return direntNames(t, list.Bytes(), off, plus)
			}
			if got := read(0, 64<<10); !slices.Equal(got, want) {
				t.Fatalf("one large reply lists %q, want %q", got, want)
			}
			// A page holds a few entries: many replies.
			var got []string
			for replies := 0; len(got) < len(want); replies++ {
				page := read(uint64(len(got)), 1024)
				if len(page) == 0 || replies > len(want) {
					t.Fatalf("listing stopped after %q", got)
				}
				got = append(got, page...)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged listing %q, want %q", got, want)
			}
		})
	}
}
