package lazyfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/metrics"
)

// The tests in this file call the FS's operations the way go-fuse does and
// check the status a process on the mount gets back. They guard the
// answers that keep a layer read-only and its bytes whole: each fails when
// its check is removed or inverted. (Through a real mount the kernel
// refuses most writes itself, because the mount is read-only, so only a
// direct call can tell the server's own refusal.)

// readerFunc is a FileReader made of a function.
type readerFunc func(ctx context.Context, file []chunks.Chunk, p []byte, off int64) (int, error)

func (f readerFunc) ReadAt(ctx context.Context, file []chunks.Chunk, p []byte, off int64) (int, error) {
	return f(ctx, file, p, off)
}

// fill is a FileReader that fills whatever it is asked for with 'x'.
var fill = readerFunc(func(_ context.Context, _ []chunks.Chunk, p []byte, _ int64) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
})

// guardTree is a small layer: a file, an executable, a private file, a
// symlink, a fifo, a directory with xattrs, an opaque directory and one
// that only root may enter.
func guardTree(t *testing.T) *Tree {
	t.Helper()
	exe := reg("bin/exe", 10, 200, 2)
	exe.Mode = 0o755
	private := reg("private", 10, 300, 3)
	private.Mode = 0o640
	private.UID, private.GID = 1000, 2000
	xd := dirEntry("xdir/")
	xd.Xattrs = map[string][]byte{"user.a": []byte("value"), "user.bb": []byte("v")}
	closed := dirEntry("closed/")
	closed.Mode = 0o600
	return mustTree(t, []*estargz.TOCEntry{
		dirEntry("bin/"),
		closed,
		reg("file", 100, 100, 1),
		exe,
		private,
		{Name: "link", Type: "symlink", LinkName: "file", Mode: 0o777},
		{Name: "fifo", Type: "fifo", Mode: 0o644},
		xd,
		dirEntry("opaque/"),
		{Name: "opaque/.wh..wh..opq", Type: "reg", Mode: 0o644},
	}, 1000)
}

func guardFS(t *testing.T, r FileReader) (*FS, *Tree) {
	t.Helper()
	tr := guardTree(t)
	return NewFS(logtest.WithT(context.Background(), t), tr, r), tr
}

// idOf returns the NodeId of a clean path.
func idOf(t *testing.T, tr *Tree, p string) uint64 {
	t.Helper()
	id, _ := resolve(t, tr, p)
	return uint64(id)
}

func TestOpenRefusesWriting(t *testing.T) {
	fs, tr := guardFS(t, fill)
	file := idOf(t, tr, "file")
	for _, tc := range []struct {
		name  string
		id    uint64
		flags uint32
		want  fuse.Status
	}{
		{"read only", file, unix.O_RDONLY, fuse.OK},
		{"read only, no follow", file, unix.O_RDONLY | unix.O_NOFOLLOW, fuse.OK},
		{"write only", file, unix.O_WRONLY, fuse.EROFS},
		{"read write", file, unix.O_RDWR, fuse.EROFS},
		{"both access bits", file, unix.O_ACCMODE, fuse.EROFS},
		{"append", file, unix.O_WRONLY | unix.O_APPEND, fuse.EROFS},
		{"truncate", file, unix.O_RDONLY | unix.O_TRUNC, fuse.EROFS},
		{"directory", idOf(t, tr, "bin"), unix.O_RDONLY, fuse.EISDIR},
		{"fifo", idOf(t, tr, "fifo"), unix.O_RDONLY, fuse.EINVAL},
		{"symlink", idOf(t, tr, "link"), unix.O_RDONLY, fuse.EINVAL},
		{"NodeId 0", 0, unix.O_RDONLY, fuse.ENOENT},
		{"NodeId past the tree", uint64(tr.Len() + 1), unix.O_RDONLY, fuse.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out fuse.OpenOut
			got := fs.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: tc.id}, Flags: tc.flags}, &out)
			if got != tc.want {
				t.Fatalf("Open(%#o) = %v, want %v", tc.flags, got, tc.want)
			}
			if got == fuse.OK && (out.Fh != tc.id || out.OpenFlags&fuse.FOPEN_KEEP_CACHE == 0) {
				t.Errorf("Open = handle %d, flags %#x; want handle %d and FOPEN_KEEP_CACHE", out.Fh, out.OpenFlags, tc.id)
			}
		})
	}
	// The last NodeId exists.
	var out fuse.OpenOut
	if got := fs.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: uint64(tr.Len())}}, &out); got == fuse.ENOENT {
		t.Errorf("Open(last NodeId %d) = ENOENT", tr.Len())
	}
}

// readStatus reads size bytes at off of NodeId id and returns the data and
// the status.
func readStatus(fs *FS, id, off uint64, size int, cancel <-chan struct{}) ([]byte, fuse.Status) {
	buf := make([]byte, size)
	rr, st := fs.Read(cancel, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: id}, Offset: off, Size: uint32(size)}, buf)
	if rr == nil {
		return nil, st
	}
	data, _ := rr.Bytes(make([]byte, size))
	return data, st
}

func TestReadIsWholeOrEIO(t *testing.T) {
	errBroken := errors.New("chunk failed verification")
	var asked []int // lengths the reader was asked for
	for _, tc := range []struct {
		name     string
		reader   readerFunc
		off      uint64
		size     int
		want     fuse.Status
		wantLen  int
		wantAsks []int
	}{
		{name: "whole read", reader: fill, off: 10, size: 20, want: fuse.OK, wantLen: 20, wantAsks: []int{20}},
		{name: "read crossing the end", reader: fill, off: 90, size: 20, want: fuse.OK, wantLen: 10, wantAsks: []int{10}},
		{name: "read of the last byte", reader: fill, off: 99, size: 20, want: fuse.OK, wantLen: 1, wantAsks: []int{1}},
		{name: "read at the end", reader: fill, off: 100, size: 20, want: fuse.OK, wantLen: 0},
		{name: "read past the end", reader: fill, off: 1 << 40, size: 20, want: fuse.OK, wantLen: 0},
		{name: "short read without error", off: 0, size: 20, want: fuse.EIO, wantAsks: []int{20},
			reader: func(_ context.Context, _ []chunks.Chunk, p []byte, _ int64) (int, error) { return len(p) - 1, nil }},
		{name: "reader error", off: 0, size: 20, want: fuse.EIO, wantAsks: []int{20},
			reader: func(_ context.Context, _ []chunks.Chunk, p []byte, _ int64) (int, error) { return 0, errBroken }},
		{name: "full read with an error", off: 0, size: 20, want: fuse.EIO, wantAsks: []int{20},
			reader: func(_ context.Context, _ []chunks.Chunk, p []byte, _ int64) (int, error) { return len(p), errBroken }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			fs, tr := guardFS(t, readerFunc(func(ctx context.Context, file []chunks.Chunk, p []byte, off int64) (int, error) {
				asked = append(asked, len(p))
				if off != int64(tc.off) || len(file) != 1 {
					t.Errorf("reader asked for %d bytes at %d of a %d-chunk file", len(p), off, len(file))
				}
				return tc.reader(ctx, file, p, off)
			}))
			data, st := readStatus(fs, idOf(t, tr, "file"), tc.off, tc.size, nil)
			if st != tc.want || len(data) != tc.wantLen {
				t.Fatalf("Read = %d bytes, %v; want %d bytes, %v", len(data), st, tc.wantLen, tc.want)
			}
			if st == fuse.OK && !bytes.Equal(data, bytes.Repeat([]byte("x"), tc.wantLen)) {
				t.Errorf("Read = %q", data)
			}
			if len(asked) != len(tc.wantAsks) || (len(asked) > 0 && asked[0] != tc.wantAsks[0]) {
				t.Errorf("reader asked for %v bytes, want %v", asked, tc.wantAsks)
			}
		})
	}
}

func TestReadOfWhatIsNoFile(t *testing.T) {
	fs, tr := guardFS(t, fill)
	for _, tc := range []struct {
		name string
		id   uint64
		want fuse.Status
	}{
		{"directory", idOf(t, tr, "bin"), fuse.EISDIR},
		{"fifo", idOf(t, tr, "fifo"), fuse.EINVAL},
		{"symlink", idOf(t, tr, "link"), fuse.EINVAL},
		{"NodeId 0", 0, fuse.ENOENT},
		{"NodeId past the tree", uint64(tr.Len() + 1), fuse.ENOENT},
	} {
		if _, st := readStatus(fs, tc.id, 0, 10, nil); st != tc.want {
			t.Errorf("%s: Read = %v, want %v", tc.name, st, tc.want)
		}
	}
}

// TestReadInterrupted guards Read's answer to an interrupt: a READ the
// kernel interrupted (cancel closed) goes on and answers its data, never
// EINTR, which no local file system returns for a regular file; a
// cancelled read of a filesystem that is shutting down, and any other
// failure, get EIO.
func TestReadInterrupted(t *testing.T) {
	data := bytes.Repeat([]byte{'x'}, 10)
	cancel := make(chan struct{})
	close(cancel)
	goesOn := readerFunc(func(ctx context.Context, _ []chunks.Chunk, p []byte, _ int64) (int, error) {
		// A fetch waiting on the registry, which would give up if the
		// interrupt ended the read's context (as that may happen just
		// after the call starts, it is given a moment to).
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
			return copy(p, data), nil
		}
	})
	fs, tr := guardFS(t, goesOn)
	if got, st := readStatus(fs, idOf(t, tr, "file"), 0, 10, cancel); st != fuse.OK || !bytes.Equal(got, data) {
		t.Errorf("interrupted Read = %q, %v; want its data", got, st)
	}

	blocking := readerFunc(func(ctx context.Context, _ []chunks.Chunk, _ []byte, _ int64) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	ctx, stop := context.WithCancel(logtest.WithT(context.Background(), t))
	stop()
	fs = NewFS(ctx, tr, blocking)
	if _, st := readStatus(fs, idOf(t, tr, "file"), 0, 10, nil); st != fuse.EIO {
		t.Errorf("Read while the FS stops = %v, want EIO", st)
	}

	fs = NewFS(logtest.WithT(context.Background(), t), tr, readerFunc(func(context.Context, []chunks.Chunk, []byte, int64) (int, error) {
		return 0, context.Canceled
	}))
	if _, st := readStatus(fs, idOf(t, tr, "file"), 0, 10, nil); st != fuse.EIO {
		t.Errorf("Read failing with context.Canceled that nobody cancelled = %v, want EIO", st)
	}
}

func TestAccessNeverAllowsWriting(t *testing.T) {
	fs, tr := guardFS(t, fill)
	root := fuse.Caller{}
	owner := fuse.Caller{Owner: fuse.Owner{Uid: 1000, Gid: 1}}
	group := fuse.Caller{Owner: fuse.Owner{Uid: 1001, Gid: 2000}}
	other := fuse.Caller{Owner: fuse.Owner{Uid: 1001, Gid: 1}}
	for _, tc := range []struct {
		name   string
		path   string
		caller fuse.Caller
		mask   uint32
		want   fuse.Status
	}{
		{"root writes", "file", root, unix.W_OK, fuse.EROFS},
		{"root reads and writes", "file", root, unix.R_OK | unix.W_OK, fuse.EROFS},
		{"root reads", "private", root, unix.R_OK, fuse.OK},
		{"root executes a file without x", "file", root, unix.X_OK, fuse.EACCES},
		{"root executes an executable", "bin/exe", root, unix.X_OK, fuse.OK},
		{"root enters a directory", "bin", root, unix.X_OK, fuse.OK},
		{"root enters a directory without x", "closed", root, unix.X_OK, fuse.OK},
		{"other enters a directory without x", "closed", other, unix.X_OK, fuse.EACCES},
		{"existence", "private", other, unix.F_OK, fuse.OK},
		{"owner reads", "private", owner, unix.R_OK, fuse.OK},
		{"owner executes", "private", owner, unix.X_OK, fuse.EACCES},
		{"group reads", "private", group, unix.R_OK, fuse.OK},
		{"group reads and executes", "private", group, unix.R_OK | unix.X_OK, fuse.EACCES},
		{"other reads", "private", other, unix.R_OK, fuse.EACCES},
		{"other reads a public file", "file", other, unix.R_OK, fuse.OK},
		{"other executes an executable", "bin/exe", other, unix.X_OK, fuse.OK},
		{"owner writes", "private", owner, unix.W_OK, fuse.EROFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &fuse.AccessIn{InHeader: fuse.InHeader{NodeId: idOf(t, tr, tc.path), Caller: tc.caller}, Mask: tc.mask}
			if got := fs.Access(nil, in); got != tc.want {
				t.Fatalf("Access(%s, mask %o, uid %d) = %v, want %v", tc.path, tc.mask, tc.caller.Uid, got, tc.want)
			}
		})
	}
	if got := fs.Access(nil, &fuse.AccessIn{InHeader: fuse.InHeader{NodeId: 0}, Mask: unix.R_OK}); got != fuse.ENOENT {
		t.Errorf("Access(NodeId 0) = %v, want ENOENT", got)
	}
}

func TestWritesAreReadOnly(t *testing.T) {
	fs, tr := guardFS(t, fill)
	h := fuse.InHeader{NodeId: idOf(t, tr, "file")}
	var entry fuse.EntryOut
	var attr fuse.AttrOut
	var create fuse.CreateOut
	ops := map[string]fuse.Status{
		"setattr":     fs.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: h}}, &attr),
		"mknod":       fs.Mknod(nil, &fuse.MknodIn{InHeader: h}, "n", &entry),
		"mkdir":       fs.Mkdir(nil, &fuse.MkdirIn{InHeader: h}, "n", &entry),
		"unlink":      fs.Unlink(nil, &h, "file"),
		"rmdir":       fs.Rmdir(nil, &h, "bin"),
		"rename":      fs.Rename(nil, &fuse.RenameIn{InHeader: h}, "file", "n"),
		"link":        fs.Link(nil, &fuse.LinkIn{InHeader: h}, "n", &entry),
		"symlink":     fs.Symlink(nil, &h, "t", "n", &entry),
		"setxattr":    fs.SetXAttr(nil, &fuse.SetXAttrIn{InHeader: h}, "user.a", []byte("v")),
		"removexattr": fs.RemoveXAttr(nil, &h, "user.a"),
		"create":      fs.Create(nil, &fuse.CreateIn{InHeader: h}, "n", &create),
		"tmpfile":     fs.Tmpfile(nil, &fuse.CreateIn{InHeader: h}, &create),
		"fallocate":   fs.Fallocate(nil, &fuse.FallocateIn{InHeader: h}),
	}
	_, ops["write"] = fs.Write(nil, &fuse.WriteIn{InHeader: h}, []byte("x"))
	_, ops["writev"] = fs.Writev(nil, &fuse.WriteIn{InHeader: h}, [][]byte{[]byte("x")})
	_, ops["copy_file_range"] = fs.CopyFileRange(nil, &fuse.CopyFileRangeIn{InHeader: h})
	for op, st := range ops {
		if st != fuse.EROFS {
			t.Errorf("%s = %v, want EROFS", op, st)
		}
	}
}

func TestXattrBuffers(t *testing.T) {
	fs, tr := guardFS(t, fill)
	xdir := &fuse.InHeader{NodeId: idOf(t, tr, "xdir")}
	for _, tc := range []struct {
		name string
		attr string
		dest int
		want fuse.Status
		n    uint32
	}{
		{"size query", "user.a", 0, fuse.ERANGE, 5},
		{"one byte short", "user.a", 4, fuse.ERANGE, 5},
		{"exact", "user.a", 5, fuse.OK, 5},
		{"larger", "user.a", 64, fuse.OK, 5},
		{"missing", "user.c", 64, fuse.ENOATTR, 0},
		{"opaque marker of a plain directory", "trusted.overlay.opaque", 64, fuse.ENOATTR, 0},
	} {
		dest := make([]byte, tc.dest)
		n, st := fs.GetXAttr(nil, xdir, tc.attr, dest)
		if st != tc.want || n != tc.n {
			t.Errorf("%s: GetXAttr = %d, %v; want %d, %v", tc.name, n, st, tc.n, tc.want)
		}
		if st == fuse.OK && string(dest[:n]) != "value" {
			t.Errorf("%s: GetXAttr value %q", tc.name, dest[:n])
		}
	}
	opaque := &fuse.InHeader{NodeId: idOf(t, tr, "opaque")}
	if n, st := fs.GetXAttr(nil, opaque, "trusted.overlay.opaque", make([]byte, 1)); st != fuse.OK || n != 1 {
		t.Errorf("GetXAttr(opaque) = %d, %v; want 1, OK", n, st)
	}
	if _, st := fs.GetXAttr(nil, &fuse.InHeader{}, "user.a", nil); st != fuse.ENOENT {
		t.Errorf("GetXAttr(NodeId 0) = %v, want ENOENT", st)
	}

	const list = "user.a\x00user.bb\x00"
	for _, tc := range []struct {
		dest int
		want fuse.Status
	}{{0, fuse.ERANGE}, {len(list) - 1, fuse.ERANGE}, {len(list), fuse.OK}, {len(list) + 5, fuse.OK}} {
		dest := make([]byte, tc.dest)
		n, st := fs.ListXAttr(nil, xdir, dest)
		if st != tc.want || n != uint32(len(list)) {
			t.Errorf("ListXAttr(%d-byte buffer) = %d, %v; want %d, %v", tc.dest, n, st, len(list), tc.want)
		}
		if st == fuse.OK && string(dest[:n]) != list {
			t.Errorf("ListXAttr = %q, want %q", dest[:n], list)
		}
	}
	const opaqueList = "trusted.overlay.opaque\x00"
	for _, size := range []int{len(opaqueList) - 1, len(opaqueList)} {
		dest := make([]byte, size)
		n, st := fs.ListXAttr(nil, opaque, dest)
		want := fuse.ERANGE
		if size == len(opaqueList) {
			want = fuse.OK
		}
		if st != want || n != uint32(len(opaqueList)) || (st == fuse.OK && string(dest) != opaqueList) {
			t.Errorf("ListXAttr(opaque, %d bytes) = %d, %v (%q); want %d, %v", size, n, st, dest[:min(int(n), size)], len(opaqueList), want)
		}
	}
}

func TestNodeKinds(t *testing.T) {
	fs, tr := guardFS(t, fill)
	file := idOf(t, tr, "file")
	var entry fuse.EntryOut
	if st := fs.Lookup(nil, &fuse.InHeader{NodeId: file}, "x", &entry); st != fuse.ENOTDIR {
		t.Errorf("Lookup in a file = %v, want ENOTDIR", st)
	}
	if st := fs.Lookup(nil, &fuse.InHeader{NodeId: 0}, "x", &entry); st != fuse.ENOENT {
		t.Errorf("Lookup in NodeId 0 = %v, want ENOENT", st)
	}
	var open fuse.OpenOut
	if st := fs.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: file}}, &open); st != fuse.ENOTDIR {
		t.Errorf("OpenDir of a file = %v, want ENOTDIR", st)
	}
	list := fuse.NewDirEntryList(make([]byte, 4096), 0)
	if st := fs.ReadDir(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: file}}, list); st != fuse.ENOTDIR {
		t.Errorf("ReadDir of a file = %v, want ENOTDIR", st)
	}
	if st := fs.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: file}}, list); st != fuse.ENOTDIR {
		t.Errorf("ReadDirPlus of a file = %v, want ENOTDIR", st)
	}
	if _, st := fs.Readlink(nil, &fuse.InHeader{NodeId: file}); st != fuse.EINVAL {
		t.Errorf("Readlink of a file = %v, want EINVAL", st)
	}
	if target, st := fs.Readlink(nil, &fuse.InHeader{NodeId: idOf(t, tr, "link")}); st != fuse.OK || string(target) != "file" {
		t.Errorf("Readlink = %q, %v", target, st)
	}
	var attr fuse.AttrOut
	if st := fs.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: uint64(tr.Len() + 1)}}, &attr); st != fuse.ENOENT {
		t.Errorf("GetAttr past the tree = %v, want ENOENT", st)
	}
}

// TestTreeBounds pins NewTree's own checks at their edges (the TOC was
// validated before, but the tree is what the kernel is answered from).
func TestTreeBounds(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name    string
		entries []*estargz.TOCEntry
		toc     int64
		ok      bool
	}{
		{"chunk just before the TOC", []*estargz.TOCEntry{reg("f", 4, 99, 1)}, 100, true},
		{"chunk at the TOC", []*estargz.TOCEntry{reg("f", 4, 100, 1)}, 100, false},
		{"chunk at blob offset 1", []*estargz.TOCEntry{reg("f", 4, 1, 1)}, 100, true},
		{"largest uid and gid", []*estargz.TOCEntry{{Name: "d", Type: "dir", UID: math.MaxUint32, GID: math.MaxUint32}}, 100, true},
		{"uid too large", []*estargz.TOCEntry{{Name: "d", Type: "dir", UID: math.MaxUint32 + 1}}, 100, false},
		{"gid too large", []*estargz.TOCEntry{{Name: "d", Type: "dir", GID: math.MaxUint32 + 1}}, 100, false},
		{"negative gid", []*estargz.TOCEntry{{Name: "d", Type: "dir", GID: -1}}, 100, false},
		{"largest device", []*estargz.TOCEntry{{Name: "c", Type: "block", DevMajor: 0xfff, DevMinor: 0xfffff}}, 100, true},
		{"minor too large", []*estargz.TOCEntry{{Name: "c", Type: "char", DevMinor: 0x100000}}, 100, false},
		{"negative major", []*estargz.TOCEntry{{Name: "c", Type: "char", DevMajor: -1}}, 100, false},
		{"negative minor", []*estargz.TOCEntry{{Name: "c", Type: "char", DevMinor: -1}}, 100, false},
		{"xattr without a name", []*estargz.TOCEntry{{Name: "d", Type: "dir", Xattrs: map[string][]byte{"": nil}}}, 100, false},
		{"digest of all hex digits", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:" + hex}}, 100, true},
		{"sha512 digest", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha512:" + hex + hex}}, 100, true},
		{"digest with g", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:g" + hex[1:]}}, 100, false},
		{"digest with a slash", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:/" + hex[1:]}}, 100, false},
		{"digest with a colon", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256::" + hex[1:]}}, 100, false},
		{"digest with a backquote", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:`" + hex[1:]}}, 100, false},
		{"digest in upper case", []*estargz.TOCEntry{{Name: "f", Type: "reg", Size: 4, Offset: 10, ChunkDigest: "sha256:A" + hex[1:]}}, 100, false},
		{"chunk digest missing on a file of two chunks", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, Digest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkDigest: testDigest(2)},
		}, 100, false},
		{"chunk of size zero means to the end", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkDigest: testDigest(2)},
		}, 100, true},
		{"negative chunk size", []*estargz.TOCEntry{
			{Name: "f", Type: "reg", Size: 20, Offset: 10, ChunkSize: 10, ChunkDigest: testDigest(1)},
			{Name: "f", Type: "chunk", Offset: 20, ChunkOffset: 10, ChunkSize: -1, ChunkDigest: testDigest(2)},
		}, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTree(&estargz.JTOC{Version: 1, Entries: tc.entries}, tc.toc)
			if tc.ok {
				if err != nil {
					t.Fatalf("NewTree = %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("NewTree = %v, %v; want invalid argument", tr, err)
			}
		})
	}
}

// TestTreeAttrs checks what stat(2) shows for bounds NewTree keeps: device
// numbers as the kernel decodes them, and the blob ranges of chunks.
func TestTreeAttrs(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		{Name: "c", Type: "char", Mode: 0o600, DevMajor: 0xfff, DevMinor: 0xfffff},
		{Name: "b", Type: "block", Mode: 0o600, DevMajor: 8, DevMinor: 0x123},
		reg("f1", 4, 10, 1),
		reg("f2", 4, 30, 2),
	}, 100)
	for _, tc := range []struct {
		path         string
		major, minor uint32
	}{{"c", 0xfff, 0xfffff}, {"b", 8, 0x123}} {
		id, n := resolve(t, tr, tc.path)
		var a fuse.Attr
		tr.fillAttr(uint64(id), n, &a)
		if got := unix.Major(uint64(a.Rdev)); got != tc.major {
			t.Errorf("%s: major %d, want %d", tc.path, got, tc.major)
		}
		if got := unix.Minor(uint64(a.Rdev)); got != tc.minor {
			t.Errorf("%s: minor %#x, want %#x", tc.path, got, tc.minor)
		}
	}
	for path, want := range map[string][2]int64{"f1": {10, 20}, "f2": {30, 70}} {
		_, n := resolve(t, tr, path)
		c := tr.fileChunks(n)
		if len(c) != 1 || c[0].BlobOffset != want[0] || c[0].BlobSize != want[1] {
			t.Errorf("%s: chunks %+v, want blob range %d+%d", path, c, want[0], want[1])
		}
	}
}

// TestLayerBookkeepingIsHidden guards what a layer must not show through
// the mount: eStargz's landmark files and TOC at the root, aufs metadata,
// and trusted.* xattrs, which overlayfs would take for its own (a layer
// storing trusted.overlay.opaque must not hide the layers below).
func TestLayerBookkeepingIsHidden(t *testing.T) {
	evil := dirEntry("d/")
	evil.Xattrs = map[string][]byte{"trusted.overlay.opaque": []byte("y"), "trusted.evil": []byte("x"), "user.ok": []byte("1")}
	tr := mustTree(t, []*estargz.TOCEntry{
		reg(estargz.PrefetchLandmark, 1, 10, 1),
		reg(estargz.NoPrefetchLandmark, 1, 20, 2),
		reg(estargz.TOCTarName, 1, 30, 3),
		reg("sub/"+estargz.PrefetchLandmark, 1, 40, 4),
		reg(".wh..wh.plnk/1", 1, 50, 5),
		dirEntry("x/"),
		reg("x/.wh..wh.aufs", 1, 60, 6),
		reg("x/.wh..wh.plnk/2", 1, 70, 7), // below the root too
		evil,
	}, 100)
	fs := NewFS(logtest.WithT(context.Background(), t), tr, fill)
	lookup := func(dir uint64, name string) uint64 {
		var out fuse.EntryOut
		if st := fs.Lookup(nil, &fuse.InHeader{NodeId: dir}, name, &out); st != fuse.OK {
			t.Fatalf("Lookup(%s) = %v", name, st)
		}
		return out.NodeId
	}
	for _, name := range []string{estargz.PrefetchLandmark, estargz.NoPrefetchLandmark, estargz.TOCTarName, ".wh..wh.plnk"} {
		if id := lookup(rootID, name); id != 0 {
			t.Errorf("%s is visible at the root (node %d)", name, id)
		}
	}
	if id := lookup(lookup(rootID, "sub"), estargz.PrefetchLandmark); id == 0 {
		t.Errorf("%s below the root is hidden: only the root's is bookkeeping", estargz.PrefetchLandmark)
	}
	for _, name := range []string{".wh..wh.aufs", ".wh..wh.plnk"} {
		if id := lookup(lookup(rootID, "x"), name); id != 0 {
			t.Errorf("aufs metadata x/%s is visible", name)
		}
	}
	d := &fuse.InHeader{NodeId: lookup(rootID, "d")}
	for _, name := range []string{"trusted.overlay.opaque", "trusted.evil"} {
		if _, st := fs.GetXAttr(nil, d, name, make([]byte, 8)); st != fuse.ENOATTR {
			t.Errorf("GetXAttr(%s) = %v, want ENOATTR", name, st)
		}
	}
	list := make([]byte, 64)
	n, st := fs.ListXAttr(nil, d, list)
	if st != fuse.OK || string(list[:n]) != "user.ok\x00" {
		t.Errorf("ListXAttr = %q, %v; want only user.ok", list[:n], st)
	}
}

// fakeDevFuse is a SOCK_SEQPACKET pair standing in for /dev/fuse: each
// packet the test writes is one request Serve reads, each packet Serve
// writes one reply.
func fakeDevFuse(t *testing.T) (serverFD, kernelFD int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// TestServeRefusesAnInitializedConnection guards serveInit's first check:
// a connection whose first request is not INIT was initialised by another
// server, and answering it as fresh would serve the kernel settings it
// never agreed to. A request too short for a header is an error too, and
// so is an INIT the server refused (a kernel speaking another protocol).
func TestServeRefusesAnInitializedConnection(t *testing.T) {
	fs := NewFS(logtest.WithT(context.Background(), t), mustTree(t, nil, 100), fill)
	lookup := syntheticInit(0)
	binary.NativeEndian.PutUint32(lookup[opcodeOffset:], 1) // FUSE_LOOKUP
	initReq := syntheticInit(0)
	oldKernel := syntheticInit(0)
	binary.NativeEndian.PutUint32(oldKernel[inHeaderSize:], 6) // protocol 6.x: go-fuse answers EIO
	for _, tc := range []struct {
		name  string
		req   []byte
		class func(error) bool
	}{
		{"LOOKUP first", lookup, errdefs.IsFailedPrecondition},
		{"short request", initReq[:inHeaderSize-1], func(err error) bool {
			return err != nil && strings.Contains(err.Error(), fmt.Sprintf("short FUSE request of %d bytes", inHeaderSize-1))
		}},
		{"INIT refused", oldKernel, func(err error) bool { return errors.Is(err, unix.EIO) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, kernel := fakeDevFuse(t)
			if _, err := unix.Write(kernel, tc.req); err != nil {
				t.Fatal(err)
			}
			called := false
			err := Serve(context.Background(), srv, fs, ServeOptions{OnInit: func(failover.InitState) { called = true }})
			if !tc.class(err) || called {
				t.Fatalf("Serve = %v (OnInit called: %v), want a refusal", err, called)
			}
		})
	}

	// A real INIT is answered, with the reply a fresh server gives it.
	srv, kernel := fakeDevFuse(t)
	req := syntheticInit(fuse.CAP_ASYNC_READ)
	if _, err := unix.Write(kernel, req); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	inits := make(chan failover.InitState, 1)
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, srv, fs, ServeOptions{OnInit: func(s failover.InitState) { inits <- s }}) }()
	st := <-inits
	stop()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after stop = %v", err)
	}
	reply := make([]byte, connSize{maxWrite: maxWrite}.outBufSize())
	n, err := unix.Read(kernel, reply)
	if err != nil || !bytes.Equal(reply[:n], st.Reply) || !bytes.Equal(st.Request, req) {
		t.Errorf("INIT reply %x, %v; OnInit saw %x", reply[:n], err, st.Reply)
	}
}

// TestStatBlocks checks st_blocks, which du(1) and tar read: 512-byte
// units, rounded up, for files and directories only.
func TestStatBlocks(t *testing.T) {
	tr := mustTree(t, []*estargz.TOCEntry{
		reg("one", 1, 10, 1),
		reg("block", 512, 20, 2),
		reg("more", 513, 30, 3),
		{Name: "empty", Type: "reg", Mode: 0o644},
		{Name: "l", Type: "symlink", LinkName: "one", Mode: 0o777},
		dirEntry("d/"),
	}, 100)
	for path, want := range map[string]uint64{"one": 1, "block": 1, "more": 2, "empty": 0, "l": 0, "d": 8} {
		id, n := resolve(t, tr, path)
		var a fuse.Attr
		tr.fillAttr(uint64(id), n, &a)
		if a.Blocks != want {
			t.Errorf("%s: %d blocks, want %d", path, a.Blocks, want)
		}
	}
}

// TestUnavailableReadCounted guards readFailed's class check: a read whose
// data the registry could not provide is an EIO counted in
// lazyfs_unavailable_reads_total (its log line is the reader's, once per
// outage); any other failure is an EIO that is not.
func TestUnavailableReadCounted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		count float64
	}{
		{"registry unreachable", fmt.Errorf("layer x: %w", chunks.ErrUnavailable), 1},
		{"verification failure", fmt.Errorf("layer x: %w", chunks.ErrVerification), 0},
		{"other error", errors.New("boom"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, tr := guardFS(t, readerFunc(func(context.Context, []chunks.Chunk, []byte, int64) (int, error) {
				return 0, tc.err
			}))
			before := counterValue(t, metrics.UnavailableReads)
			if _, st := readStatus(fs, idOf(t, tr, "file"), 0, 10, nil); st != fuse.EIO {
				t.Errorf("Read = %v, want EIO", st)
			}
			if got := counterValue(t, metrics.UnavailableReads) - before; got != tc.count {
				t.Errorf("lazyfs_unavailable_reads_total grew by %v, want %v", got, tc.count)
			}
		})
	}
}

// TestNoSuchNode guards every operation's check of the NodeId it is
// given: 0 and the first one past the tree name no node (a kernel that
// held a NodeId of another tree, or a forged request) and get ENOENT,
// never another node's answer nor a crash.
func TestNoSuchNode(t *testing.T) {
	fs, tr := guardFS(t, fill)
	for _, id := range []uint64{0, uint64(tr.Len() + 1)} {
		h := fuse.InHeader{NodeId: id}
		var entry fuse.EntryOut
		var attr fuse.AttrOut
		var open fuse.OpenOut
		list := fuse.NewDirEntryList(make([]byte, 4096), 0)
		st := map[string]fuse.Status{
			"lookup":      fs.Lookup(nil, &h, "file", &entry),
			"getattr":     fs.GetAttr(nil, &fuse.GetAttrIn{InHeader: h}, &attr),
			"access":      fs.Access(nil, &fuse.AccessIn{InHeader: h, Mask: unix.R_OK}),
			"open":        fs.Open(nil, &fuse.OpenIn{InHeader: h}, &open),
			"opendir":     fs.OpenDir(nil, &fuse.OpenIn{InHeader: h}, &open),
			"readdir":     fs.ReadDir(nil, &fuse.ReadIn{InHeader: h}, list),
			"readdirplus": fs.ReadDirPlus(nil, &fuse.ReadIn{InHeader: h}, list),
		}
		_, st["read"] = readStatus(fs, id, 0, 10, nil)
		_, st["readlink"] = fs.Readlink(nil, &h)
		_, st["getxattr"] = fs.GetXAttr(nil, &h, "user.a", make([]byte, 64))
		_, st["getxattr opaque"] = fs.GetXAttr(nil, &h, opaqueXattr, make([]byte, 64))
		_, st["listxattr"] = fs.ListXAttr(nil, &h, make([]byte, 64))
		for op, got := range st {
			if got != fuse.ENOENT {
				t.Errorf("%s of NodeId %d = %v, want ENOENT", op, id, got)
			}
		}
	}
}

// TestUnparsableRequestAnswered guards handle's answer to a request
// go-fuse cannot parse (too short for its opcode): it gets an EIO reply
// carrying its unique, so that its caller does not wait forever.
func TestUnparsableRequestAnswered(t *testing.T) {
	fs := NewFS(logtest.WithT(context.Background(), t), guardTree(t), fill)
	srv, kernel := fakeDevFuse(t)
	if _, err := unix.Write(kernel, syntheticInit(fuse.CAP_ASYNC_READ)); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(logtest.WithT(context.Background(), t))
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, srv, fs, ServeOptions{}) }()
	defer func() {
		stop()
		<-served
	}()
	reply := make([]byte, 1<<20) // larger than any reply
	readReply := func() []byte {
		t.Helper()
		if err := unix.SetNonblock(kernel, false); err != nil {
			t.Fatal(err)
		}
		var n int
		within(t, "reply", func() {
			var err error
			for n, err = unix.Read(kernel, reply); errors.Is(err, unix.EINTR); n, err = unix.Read(kernel, reply) {
			}
			if err != nil {
				t.Fatal(err)
			}
		})
		return reply[:n]
	}
	readReply() // INIT's

	// A READ of one header and no fuse_read_in.
	req := make([]byte, inHeaderSize)
	binary.NativeEndian.PutUint32(req[0:], inHeaderSize)
	binary.NativeEndian.PutUint32(req[opcodeOffset:], fuseOpRead)
	binary.NativeEndian.PutUint64(req[8:], 77) // unique
	binary.NativeEndian.PutUint64(req[16:], uint64(rootID))
	if _, err := unix.Write(kernel, req); err != nil {
		t.Fatal(err)
	}
	got := readReply()
	if len(got) != outHeaderSize || int32(binary.NativeEndian.Uint32(got[4:])) != -int32(unix.EIO) || binary.NativeEndian.Uint64(got[8:]) != 77 {
		t.Fatalf("reply %x, want an EIO header for unique 77", got)
	}
}

// TestStatFs pins what statfs(2) reports: the layer's file bytes in
// 4 KiB blocks, rounded up, its inode count, and nothing free.
func TestStatFs(t *testing.T) {
	// The data's size in whole blocks, the last one rounded up.
	for _, tc := range []struct {
		second int64
		blocks uint64
	}{{1, 2}, {4096, 2}, {4097, 3}} {
		tr := mustTree(t, []*estargz.TOCEntry{reg("a", 4096, 10, 1), reg("b", tc.second, 20, 2), dirEntry("d/")}, 10000)
		fs := NewFS(logtest.WithT(context.Background(), t), tr, fill)
		var out fuse.StatfsOut
		if st := fs.StatFs(nil, &fuse.InHeader{NodeId: rootID}, &out); st != fuse.OK {
			t.Fatal(st)
		}
		want := fuse.StatfsOut{Blocks: tc.blocks, Files: uint64(tr.Len()), Bsize: blockSize, Frsize: blockSize, NameLen: maxNameLen}
		if out != want {
			t.Errorf("files of 4096 and %d bytes: StatFs = %+v, want %+v", tc.second, out, want)
		}
	}
}
