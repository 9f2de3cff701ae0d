package toc_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// The tests in this file pin each bound of Validate at its edge: the value
// at the limit is accepted and the next one refused, so that a bound that
// is dropped, loosened or tightened by one turns a test red.

var (
	guardBlob = digest.Digest("sha256:" + strings.Repeat("1", 64))
	guardD1   = "sha256:" + strings.Repeat("a", 64)
	guardD2   = "sha256:" + strings.Repeat("b", 64)
)

// guardLayer is a layer of entries whose TOC sits at tocOffset in a blob
// one byte larger.
func guardLayer(tocOffset int64, entries ...*estargz.TOCEntry) *toc.Layer {
	return &toc.Layer{
		BlobDigest: guardBlob,
		BlobSize:   tocOffset + 1,
		TOCOffset:  tocOffset,
		TOC:        &estargz.JTOC{Version: 1, Entries: entries},
	}
}

// file is a one-chunk regular file at blob offset off.
func file(name string, size, off int64) *estargz.TOCEntry {
	return &estargz.TOCEntry{Name: name, Type: "reg", Mode: 0o644, Size: size, Offset: off, ChunkDigest: guardD1}
}

func fifo(name string) *estargz.TOCEntry {
	return &estargz.TOCEntry{Name: name, Type: "fifo", Mode: 0o644}
}

type guardCase struct {
	name   string
	layer  *toc.Layer
	lim    *toc.Limits
	reason string // "" means accepted
	entry  string // wanted RefusedError.Entry when reason is set; "" is not checked
}

func runGuardCases(t *testing.T, cases []guardCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lim := toc.DefaultLimits()
			if tc.lim != nil {
				lim = *tc.lim
			}
			err := toc.Validate(tc.layer, lim)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want the layer accepted", err)
				}
				return
			}
			assertRefused(t, err, guardBlob, tc.reason, tc.entry)
		})
	}
}

// TestValidateInflateRatio guards checkSpans: a chunk may not need more
// decompressed bytes than deflate can make of its compressed stream (1032
// per byte), which runs to the next stream or to the TOC.
func TestValidateInflateRatio(t *testing.T) {
	const ratio = 1032
	runGuardCases(t, []guardCase{
		{name: "last stream at the ratio", layer: guardLayer(100, file("a", 100*ratio, 0))},
		{name: "last stream past the ratio", layer: guardLayer(100, file("a", 100*ratio+1, 0)), reason: toc.ReasonBadSize, entry: "a"},
		{name: "first of two streams at the ratio", layer: guardLayer(1000, file("a", 10*ratio, 0), file("b", 1, 10))},
		{name: "first of two streams past the ratio", layer: guardLayer(1000, file("a", 10*ratio+1, 0), file("b", 1, 10)), reason: toc.ReasonBadSize, entry: "a"},
		{name: "second of two streams past the ratio", layer: guardLayer(20, file("a", 1, 0), file("b", 10*ratio+1, 10)), reason: toc.ReasonBadSize, entry: "b"},
		{name: "shared stream counts inner offsets", layer: guardLayer(10,
			file("a", 5*ratio, 0),
			&estargz.TOCEntry{Name: "b", Type: "reg", Mode: 0o644, Size: 5*ratio + 1, Offset: 0, InnerOffset: 5 * ratio, ChunkDigest: guardD2}),
			reason: toc.ReasonBadSize, entry: "b"},
		{name: "shared stream within the ratio", layer: guardLayer(10,
			file("a", 5*ratio, 0),
			&estargz.TOCEntry{Name: "b", Type: "reg", Mode: 0o644, Size: 5 * ratio, Offset: 0, InnerOffset: 5 * ratio, ChunkDigest: guardD2})},
		// The span bound must not overflow: a stream of MaxInt64/1032
		// bytes is still bounded.
		{name: "largest span without overflow", layer: guardLayer(math.MaxInt64/ratio,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 1, Offset: 0, InnerOffset: math.MaxInt64 - 1, ChunkDigest: guardD1}),
			reason: toc.ReasonBadSize, entry: "a"},
		{name: "inner offset alone past the ratio", layer: guardLayer(10,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 1, Offset: 0, InnerOffset: 10 * ratio, ChunkDigest: guardD1}),
			reason: toc.ReasonBadSize, entry: "a"},
	})
}

// TestValidateChunkPlacement guards where dataChunk lets a chunk lie.
func TestValidateChunkPlacement(t *testing.T) {
	big := int64(1 << 40)
	at := func(e *estargz.TOCEntry, f func(*estargz.TOCEntry)) *estargz.TOCEntry { f(e); return e }
	runGuardCases(t, []guardCase{
		{name: "chunk just before the TOC", layer: guardLayer(100, file("a", 1, 99))},
		{name: "chunk at the TOC", layer: guardLayer(100, file("a", 1, 100)), reason: toc.ReasonBadOffset, entry: "a"},
		{name: "chunk at blob offset 0", layer: guardLayer(100, file("a", 1, 0))},
		{name: "chunk at a negative offset", layer: guardLayer(100, file("a", 1, -1)), reason: toc.ReasonBadOffset, entry: "a"},
		{name: "inner offset 0", layer: guardLayer(100, at(file("a", 1, 0), func(e *estargz.TOCEntry) { e.InnerOffset = 0 }))},
		{name: "negative inner offset", layer: guardLayer(100, at(file("a", 1, 0), func(e *estargz.TOCEntry) { e.InnerOffset = -1 })), reason: toc.ReasonBadOffset, entry: "a"},
		{name: "inner offset plus size overflows", layer: guardLayer(100, at(file("a", 2, 0), func(e *estargz.TOCEntry) { e.InnerOffset = math.MaxInt64 - 1 })), reason: toc.ReasonBadSize, entry: "a"},
		{name: "inner offset plus size at MaxInt64", layer: guardLayer(100, at(file("a", 2, 0), func(e *estargz.TOCEntry) { e.InnerOffset = math.MaxInt64 - 2 })), reason: toc.ReasonBadSize, entry: "a"},
		// A stream long enough for any inner offset: only the overflow
		// check applies.
		{name: "inner offset plus size at MaxInt64 in a huge stream", layer: guardLayer(math.MaxInt64/2, at(file("a", 2, 0), func(e *estargz.TOCEntry) { e.InnerOffset = math.MaxInt64 - 2 }))},
		{name: "inner offset plus size past MaxInt64 in a huge stream", layer: guardLayer(math.MaxInt64/2, at(file("a", 2, 0), func(e *estargz.TOCEntry) { e.InnerOffset = math.MaxInt64 - 1 })), reason: toc.ReasonBadSize, entry: "a"},
		{name: "chunk of MaxChunkSize", layer: &toc.Layer{BlobDigest: guardBlob, BlobSize: big, TOCOffset: big - 1,
			TOC: &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{file("a", toc.MaxChunkSize, 0)}}}},
		{name: "chunk over MaxChunkSize", layer: &toc.Layer{BlobDigest: guardBlob, BlobSize: big, TOCOffset: big - 1,
			TOC: &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{file("a", toc.MaxChunkSize+1, 0)}}}, reason: toc.ReasonBadSize, entry: "a"},
		{name: "chunks sharing a stream back to back", layer: guardLayer(100,
			file("a", 4, 0),
			&estargz.TOCEntry{Name: "b", Type: "reg", Mode: 0o644, Size: 4, Offset: 0, InnerOffset: 4, ChunkDigest: guardD2})},
		{name: "chunks sharing a stream overlap by one", layer: guardLayer(100,
			file("a", 4, 0),
			&estargz.TOCEntry{Name: "b", Type: "reg", Mode: 0o644, Size: 4, Offset: 0, InnerOffset: 3, ChunkDigest: guardD2}),
			reason: toc.ReasonBadOffset, entry: "b"},
		{name: "chunk entry with a size", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Size: 4, Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: guardD2}),
			reason: toc.ReasonBadSize, entry: "a"},
		{name: "chunk entry naming its file", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "./a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Name: "a", Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: guardD2})},
		{name: "chunk entry with an unsafe name", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Name: "../a", Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: guardD2}),
			reason: toc.ReasonMalformed, entry: "a"},
		{name: "chunk entry with a bad digest", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Digest: "sha256:1", Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: guardD2}),
			reason: toc.ReasonMalformed, entry: "a"},
		{name: "second chunk with a bad chunk digest", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: "sha256:" + strings.Repeat("g", 64)}),
			reason: toc.ReasonMalformed, entry: "a"},
		{name: "one chunk whose digest is the file digest", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, Digest: guardD1, ChunkDigest: guardD1})},
		{name: "file with a bad digest", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, Digest: "sha256:" + strings.Repeat("a", 63), ChunkDigest: guardD1}),
			reason: toc.ReasonMalformed, entry: "a"},
		{name: "empty file with a bad digest", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Digest: "sha256:x"}),
			reason: toc.ReasonMalformed, entry: "a"},
		{name: "empty file with a blob offset", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Offset: 5}),
			reason: toc.ReasonBadOffset, entry: "a"},
		{name: "empty file with a chunk size", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, ChunkSize: 5}),
			reason: toc.ReasonBadSize, entry: "a"},
		{name: "fifo with a chunk offset", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "fifo", Mode: 0o644, ChunkOffset: 5}),
			reason: toc.ReasonBadOffset, entry: "a"},
		{name: "fifo with an inner offset", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "fifo", Mode: 0o644, InnerOffset: 5}),
			reason: toc.ReasonBadOffset, entry: "a"},
		{name: "two-chunk file with a file digest only", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, Digest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkSize: 4}),
			reason: toc.ReasonUnverifiable, entry: "a"},
		{name: "chunk size to the end of the file", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkDigest: guardD2})},
		{name: "chunk size exactly what remains", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkSize: 4, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkOffset: 4, ChunkSize: 4, ChunkDigest: guardD2})},
		{name: "chunk after the end of the file", layer: guardLayer(100,
			&estargz.TOCEntry{Name: "a", Type: "reg", Mode: 0o644, Size: 8, ChunkDigest: guardD1},
			&estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkOffset: 8, ChunkSize: 1, ChunkDigest: guardD2}),
			reason: toc.ReasonBadSize, entry: "a"},
	})
}

// TestValidateLayerBounds guards the checks of the layer as a whole.
func TestValidateLayerBounds(t *testing.T) {
	withBlob := func(size, tocOffset int64) *toc.Layer {
		l := guardLayer(tocOffset, fifo("a"))
		l.BlobSize = size
		return l
	}
	entries := func(n int) *toc.Layer {
		var es []*estargz.TOCEntry
		for i := range n {
			es = append(es, fifo(fmt.Sprintf("f%d", i)))
		}
		return guardLayer(100, es...)
	}
	lim := func(maxEntries int) *toc.Limits {
		l := toc.DefaultLimits()
		l.MaxEntries = maxEntries
		return &l
	}
	runGuardCases(t, []guardCase{
		{name: "TOC at the last byte", layer: withBlob(100, 99)},
		{name: "TOC at offset 0", layer: withBlob(100, 0)},
		{name: "TOC at a negative offset", layer: withBlob(100, -1), reason: toc.ReasonBadOffset},
		{name: "TOC at the blob's end", layer: withBlob(100, 100), reason: toc.ReasonBadOffset},
		{name: "one-byte blob", layer: withBlob(1, 0)},
		{name: "empty blob", layer: withBlob(0, 0), reason: toc.ReasonBadSize},
		{name: "negative blob size", layer: withBlob(-1, 0), reason: toc.ReasonBadSize},
		{name: "entries at the limit", layer: entries(3), lim: lim(3)},
		{name: "entries over the limit", layer: entries(4), lim: lim(3), reason: toc.ReasonTooManyEntries},
	})
}

// TestValidateNames guards checkName and checkSymlinkTarget at their lengths.
func TestValidateNames(t *testing.T) {
	comp := func(n int) string { return strings.Repeat("n", n) }
	link := func(name, typ, target string) *estargz.TOCEntry {
		return &estargz.TOCEntry{Name: name, Type: typ, Mode: 0o777, LinkName: target}
	}
	runGuardCases(t, []guardCase{
		{name: "component of NAME_MAX", layer: guardLayer(100, fifo("d/"+comp(255)+"/x"))},
		{name: "component over NAME_MAX", layer: guardLayer(100, fifo("d/"+comp(256)+"/x")), reason: toc.ReasonUnsafeName},
		{name: "last component over NAME_MAX", layer: guardLayer(100, fifo(comp(256))), reason: toc.ReasonUnsafeName},
		{name: "dot-dot as the last component", layer: guardLayer(100, fifo("a/..")), reason: toc.ReasonUnsafeName},
		{name: "dot-dot-dot is a name", layer: guardLayer(100, fifo("..."))},
		{name: "NUL first", layer: guardLayer(100, fifo("\x00a")), reason: toc.ReasonUnsafeName},
		{name: "dot-dot after a double slash", layer: guardLayer(100, fifo("a//..")), reason: toc.ReasonUnsafeName},
		{name: "NUL at the end", layer: guardLayer(100, fifo("a\x00")), reason: toc.ReasonUnsafeName},
		{name: "symlink target of PATH_MAX-1", layer: guardLayer(100, link("l", "symlink", strings.Repeat("t", 4095)))},
		{name: "symlink target of PATH_MAX", layer: guardLayer(100, link("l", "symlink", strings.Repeat("t", 4096))), reason: toc.ReasonBadLink, entry: "l"},
		{name: "absolute symlink target", layer: guardLayer(100, link("l", "symlink", "/etc/passwd"))},
		{name: "symlink target with NUL first", layer: guardLayer(100, link("l", "symlink", "\x00a")), reason: toc.ReasonBadLink, entry: "l"},
		{name: "symlink target with NUL at the end", layer: guardLayer(100, link("l", "symlink", "a\x00")), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link target empty", layer: guardLayer(100, fifo("a"), link("l", "hardlink", "")), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link chain", layer: guardLayer(100, link("c", "hardlink", "b"), link("b", "hardlink", "a"), fifo("a"), link("d", "hardlink", "c"))},
		{name: "hard link into a cycle", layer: guardLayer(100, fifo("a"), link("x", "hardlink", "y"), link("y", "hardlink", "z"), link("z", "hardlink", "y")),
			reason: toc.ReasonBadLink, entry: "x"},
		{name: "hard link to a file below a file", layer: guardLayer(100, fifo("a"), fifo("a/b")), reason: toc.ReasonUnsafeName, entry: "a/b"},
		{name: "entry below a directory", layer: guardLayer(100, &estargz.TOCEntry{Name: "a/", Type: "dir", Mode: 0o755}, fifo("a/b"))},
		{name: "root directory", layer: guardLayer(100, &estargz.TOCEntry{Name: "./", Type: "dir", Mode: 0o755})},
		{name: "symlink named as root", layer: guardLayer(100, link(".", "symlink", "x")), reason: toc.ReasonUnsafeName},
		{name: "block device", layer: guardLayer(100, &estargz.TOCEntry{Name: "b", Type: "block", Mode: 0o600, DevMajor: 8})},
	})
}

// TestValidateAttrs guards checkAttrs and checkDevice at their edges.
func TestValidateAttrs(t *testing.T) {
	with := func(f func(e *estargz.TOCEntry)) *toc.Layer {
		e := &estargz.TOCEntry{Name: "e", Type: "char", Mode: 0o644}
		f(e)
		return guardLayer(100, e)
	}
	const maxID = math.MaxUint32 - 1
	xattrs := func(n, nameLen int) map[string][]byte {
		m := make(map[string][]byte, n)
		for i := range n {
			name := fmt.Sprintf("user.%0*d", nameLen-5, i)
			m[name] = nil
		}
		return m
	}
	runGuardCases(t, []guardCase{
		{name: "largest mode", layer: with(func(e *estargz.TOCEntry) { e.Mode = 0o7777777 })},
		{name: "mode too large", layer: with(func(e *estargz.TOCEntry) { e.Mode = 0o7777777 + 1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "largest uid", layer: with(func(e *estargz.TOCEntry) { e.UID = maxID })},
		{name: "uid -1 as unsigned", layer: with(func(e *estargz.TOCEntry) { e.UID = maxID + 1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "negative uid", layer: with(func(e *estargz.TOCEntry) { e.UID = -1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "largest gid", layer: with(func(e *estargz.TOCEntry) { e.GID = maxID })},
		{name: "gid -1 as unsigned", layer: with(func(e *estargz.TOCEntry) { e.GID = maxID + 1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "negative gid", layer: with(func(e *estargz.TOCEntry) { e.GID = -1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "largest device", layer: with(func(e *estargz.TOCEntry) { e.DevMajor, e.DevMinor = 1<<12-1, 1<<20-1 })},
		{name: "major too large", layer: with(func(e *estargz.TOCEntry) { e.DevMajor = 1 << 12 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "minor too large", layer: with(func(e *estargz.TOCEntry) { e.DevMinor = 1 << 20 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "negative major", layer: with(func(e *estargz.TOCEntry) { e.DevMajor = -1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "negative minor", layer: with(func(e *estargz.TOCEntry) { e.DevMinor = -1 }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "xattr name of XATTR_NAME_MAX", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = xattrs(1, 255) })},
		{name: "xattr name over XATTR_NAME_MAX", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = xattrs(1, 256) }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "xattr name starting with NUL", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = map[string][]byte{"\x00user.a": nil} }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "xattr name with NUL", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = map[string][]byte{"user.a\x00": nil} }), reason: toc.ReasonMalformed, entry: "e"},
		{name: "xattr value of XATTR_SIZE_MAX", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = map[string][]byte{"user.a": make([]byte, 64<<10)} })},
		{name: "xattr value over XATTR_SIZE_MAX", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = map[string][]byte{"user.a": make([]byte, 64<<10+1)} }), reason: toc.ReasonMalformed, entry: "e"},
		// 256 names of 255 bytes take 256*256 bytes with their NULs: the limit.
		{name: "xattr list at the limit", layer: with(func(e *estargz.TOCEntry) { e.Xattrs = xattrs(256, 255) })},
		{name: "xattr list over the limit", layer: with(func(e *estargz.TOCEntry) {
			e.Xattrs = xattrs(256, 255)
			e.Xattrs["user.x"] = nil
		}), reason: toc.ReasonMalformed, entry: "e"},
	})
}

// TestValidateDigests guards checkDigest: a digest that cannot verify
// anything makes the layer unservable.
func TestValidateDigests(t *testing.T) {
	with := func(d string) *toc.Layer {
		l := guardLayer(100, file("a", 4, 0))
		l.TOC.Entries[0].ChunkDigest = d
		return l
	}
	hex := strings.Repeat("0123456789abcdef", 4)
	runGuardCases(t, []guardCase{
		{name: "all hex digits", layer: with("sha256:" + hex)},
		{name: "sha512", layer: with("sha512:" + hex + hex)},
		{name: "one digit short", layer: with("sha256:" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
		{name: "one digit long", layer: with("sha256:" + hex + "0"), reason: toc.ReasonMalformed, entry: "a"},
		{name: "no algorithm", layer: with(hex), reason: toc.ReasonMalformed, entry: "a"},
		{name: "unknown algorithm", layer: with("sha1:" + hex), reason: toc.ReasonMalformed, entry: "a"},
		{name: "digit below 0", layer: with("sha256:/" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
		{name: "digit above 9", layer: with("sha256::" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
		{name: "letter below a", layer: with("sha256:`" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
		{name: "letter above f", layer: with("sha256:g" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
		{name: "uppercase", layer: with("sha256:A" + hex[1:]), reason: toc.ReasonMalformed, entry: "a"},
	})
}

// TestLimitsMustBePositive guards Limits.check: a zero limit is a
// configuration error, not a refused layer.
func TestLimitsMustBePositive(t *testing.T) {
	layer := guardLayer(100, fifo("a"))
	for _, tc := range []struct {
		name string
		lim  toc.Limits
		ok   bool
	}{
		{"all one", toc.Limits{MaxCompressedSize: 1, MaxSize: 1, MaxEntries: 1}, true},
		{"no compressed size", toc.Limits{MaxSize: 1, MaxEntries: 1}, false},
		{"no size", toc.Limits{MaxCompressedSize: 1, MaxEntries: 1}, false},
		{"no entries", toc.Limits{MaxCompressedSize: 1, MaxSize: 1}, false},
		{"negative", toc.Limits{MaxCompressedSize: -1, MaxSize: 1, MaxEntries: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := toc.Validate(layer, tc.lim)
			if tc.ok {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			var re *toc.RefusedError
			if !errdefs.IsInvalidArgument(err) || errors.As(err, &re) {
				t.Fatalf("Validate = %v, want invalid argument that is no refusal", err)
			}
		})
	}
}

// TestStoreGetBoundsStoredTOC guards readBounded: a stored TOC is measured
// before it is read, at exactly MaxSize it is read.
func TestStoreGetBoundsStoredTOC(t *testing.T) {
	l := fetchedBase(t)
	s, _ := newStore(t)
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	lim := toc.DefaultLimits()
	lim.MaxSize = int64(len(tocJSON(t, l)))
	if _, err := s.Get(l.TOCDigest, lim); err != nil {
		t.Fatalf("Get at exactly MaxSize: %v", err)
	}
	lim.MaxSize--
	_, err := s.Get(l.TOCDigest, lim)
	assertRefused(t, err, l.BlobDigest, toc.ReasonTOCTooLarge, "")
}

// TestStoreGetBoundsMetadata guards readMeta's size bound.
func TestStoreGetBoundsMetadata(t *testing.T) {
	l := fetchedBase(t)
	for _, tc := range []struct {
		name string
		pad  int
		ok   bool
	}{{"at the bound", 4 << 10, true}, {"over the bound", 4<<10 + 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			if err := s.Put(l); err != nil {
				t.Fatal(err)
			}
			_, metaPath := storedPaths(dir, l.TOCDigest)
			b, err := os.ReadFile(metaPath)
			if err != nil {
				t.Fatal(err)
			}
			// Trailing spaces keep the JSON valid.
			if err := os.WriteFile(metaPath, append(b, strings.Repeat(" ", tc.pad-len(b))...), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = s.Get(l.TOCDigest, toc.DefaultLimits())
			if tc.ok {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				return
			}
			assertRefused(t, err, "", toc.ReasonMalformed, "")
		})
	}
}

// TestStorePutRefusesInvalidLayers guards Put's checks of what it writes.
func TestStorePutRefusesInvalidLayers(t *testing.T) {
	good := fetchedBase(t)
	for _, tc := range []struct {
		name  string
		layer func() *toc.Layer
	}{
		{"nil", func() *toc.Layer { return nil }},
		{"invalid TOC digest", func() *toc.Layer { l := *good; l.TOCDigest = "sha256:x"; return &l }},
		{"invalid blob digest", func() *toc.Layer { l := *good; l.BlobDigest = "sha256:x"; return &l }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			if err := s.Put(tc.layer()); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Put = %v, want invalid argument", err)
			}
		})
	}
}

// TestFetchFooterBounds guards readFooter and readCompressedTOC at their
// edges: a blob that is only a footer, a footer pointing at itself, and a
// TOC at offset 0 (a layer without files).
func TestFetchFooterBounds(t *testing.T) {
	fetch := func(blob []byte, d digest.Digest) error {
		_, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), d, toc.DefaultLimits())
		return err
	}
	tocJSON := []byte(`{"version":1,"entries":[]}`)

	blob, d := forgeRaw(t, nil, tocJSON)
	if err := fetch(blob, d); err != nil {
		t.Errorf("TOC at offset 0: %v", err)
	}

	blob = footer(t, 0)
	assertRefused(t, fetch(blob, d), blobDigest(blob), toc.ReasonBadOffset, "")

	blob = append(make([]byte, 10), footer(t, 10)...)
	assertRefused(t, fetch(blob, d), blobDigest(blob), toc.ReasonBadOffset, "")

	blob = footer(t, 0)[1:]
	assertRefused(t, fetch(blob, d), blobDigest(blob), toc.ReasonUnsupportedFormat, "")
}

// TestRefusedErrorWithoutCause guards Error and Unwrap of a refusal that
// carries no cause.
func TestRefusedErrorWithoutCause(t *testing.T) {
	err := error(&toc.RefusedError{Reason: toc.ReasonBadSize})
	if got := err.Error(); got != "layer (unknown) refused for lazy loading (bad_size)" {
		t.Errorf("Error() = %q", got)
	}
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("%v is not invalid argument", err)
	}
}

// TestFetchRefusesDeclaredTOCSize pins openTOC's check of the size the
// TOC's tar header declares: at MaxSize the TOC loads; one byte more is
// refused as too large from the header alone, even when the stream holds
// far less (nothing is inflated to find out).
func TestFetchRefusesDeclaredTOCSize(t *testing.T) {
	tocJSON := []byte(`{"version":1,"entries":[]}`)
	lim := toc.DefaultLimits()
	lim.MaxSize = int64(len(tocJSON))
	blob := slices.Concat(make([]byte, 8), tarGzip(t, estargz.TOCTarName, int64(len(tocJSON)), tocJSON), footer(t, 8))
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), digest.FromBytes(tocJSON), lim); err != nil {
		t.Fatalf("TOC declaring exactly MaxSize: %v", err)
	}
	lim.MaxSize--
	_, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), digest.FromBytes(tocJSON), lim)
	assertRefused(t, err, blobDigest(blob), toc.ReasonTOCTooLarge, "")

	// A header declaring more than the limit over a short stream: the
	// refusal names the size, not a truncated stream.
	lim = toc.DefaultLimits()
	lied := slices.Concat(make([]byte, 8), tarGzip(t, estargz.TOCTarName, lim.MaxSize+1, tocJSON), footer(t, 8))
	_, err = toc.Fetch(testCtx(t), newSource(lied), blobDigest(lied), digest.FromBytes(tocJSON), lim)
	assertRefused(t, err, blobDigest(lied), toc.ReasonTOCTooLarge, "")
}
