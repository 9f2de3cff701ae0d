package toc_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// blobMaker produces the blob under test and the TOC digest annotation.
type blobMaker func(t *testing.T) ([]byte, digest.Digest)

// mutate forges a blob from baseBlob with its TOC changed by f.
func mutate(f func(t *testing.T, jtoc *estargz.JTOC)) blobMaker {
	return func(t *testing.T) ([]byte, digest.Digest) {
		blob, _ := baseBlob(t)
		body, jtoc := splitBlob(t, blob)
		f(t, jtoc)
		return forge(t, body, jtoc)
	}
}

// rename renames the entry (name, typ) of the base layer.
func rename(name, typ, to string) blobMaker {
	return mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, name, typ).Name = to })
}

// add appends entries to the base layer's TOC.
func add(es ...*estargz.TOCEntry) blobMaker {
	return mutate(func(t *testing.T, j *estargz.JTOC) { j.Entries = append(j.Entries, es...) })
}

// rawTOC forges a blob whose TOC JSON is exactly s.
func rawTOC(s string) blobMaker {
	return func(t *testing.T) ([]byte, digest.Digest) {
		return forgeRaw(t, make([]byte, 64), []byte(s))
	}
}

// withDigest keeps the blob of m but annotates it with d.
func withDigest(m blobMaker, d digest.Digest) blobMaker {
	return func(t *testing.T) ([]byte, digest.Digest) {
		blob, _ := m(t)
		return blob, d
	}
}

// rawBlob is a blob that is not eStargz at all.
func rawBlob(b []byte) blobMaker {
	return func(t *testing.T) ([]byte, digest.Digest) { return b, digest.FromString("toc") }
}

type refusalCase struct {
	name   string
	make   blobMaker
	lim    func(base toc.Limits) toc.Limits
	reason string
	entry  string // wanted RefusedError.Entry; "" when not checked
}

func refusalCases() []refusalCase {
	long := strings.Repeat("x", 256)
	return []refusalCase{
		// toc_digest_mismatch
		{name: "digest of another TOC", make: withDigest(rawTOC(`{"version":1}`), digest.FromString(`{"version":1} `)), reason: toc.ReasonTOCDigestMismatch},
		{name: "TOC changed, annotation kept", reason: toc.ReasonTOCDigestMismatch, make: func(t *testing.T) ([]byte, digest.Digest) {
			_, tocDigest := baseBlob(t)
			forged, _ := mutate(func(t *testing.T, j *estargz.JTOC) { j.Entries = j.Entries[1:] })(t)
			return forged, tocDigest
		}},

		// toc_too_large
		{name: "uncompressed over MaxSize", make: rawTOC(`{"version":1,"entries":[]}`), reason: toc.ReasonTOCTooLarge,
			lim: func(l toc.Limits) toc.Limits { l.MaxSize = int64(len(`{"version":1,"entries":[]}`)) - 1; return l }},
		{name: "gzip bomb", make: rawTOC(`{"version":1,"entries":[]}` + strings.Repeat(" ", 8<<20)), reason: toc.ReasonTOCTooLarge,
			lim: func(l toc.Limits) toc.Limits { l.MaxSize = 1 << 20; return l }},

		// too_many_entries
		{name: "entries over MaxEntries", make: func(t *testing.T) ([]byte, digest.Digest) { return baseBlob(t) }, reason: toc.ReasonTooManyEntries,
			lim: func(l toc.Limits) toc.Limits { l.MaxEntries = 3; return l }},

		// unsafe_name
		{name: "dot-dot escape", make: rename("etc/passwd", "reg", "../etc/passwd"), reason: toc.ReasonUnsafeName, entry: "../etc/passwd"},
		{name: "dot-dot inside", make: rename("etc/passwd", "reg", "etc/../../passwd"), reason: toc.ReasonUnsafeName, entry: "etc/../../passwd"},
		{name: "dot-dot alone", make: rename("bin/", "dir", ".."), reason: toc.ReasonUnsafeName, entry: ".."},
		{name: "absolute", make: rename("etc/passwd", "reg", "/abs"), reason: toc.ReasonUnsafeName, entry: "/abs"},
		{name: "root slash", make: rename("etc/", "dir", "/"), reason: toc.ReasonUnsafeName, entry: "/"},
		{name: "empty", make: rename("fifo", "fifo", ""), reason: toc.ReasonUnsafeName},
		{name: "NUL", make: rename("fifo", "fifo", "fi\x00fo"), reason: toc.ReasonUnsafeName, entry: "fi\x00fo"},
		{name: "component over NAME_MAX", make: rename("fifo", "fifo", "d/"+long), reason: toc.ReasonUnsafeName, entry: "d/" + long},
		{name: "file named as root", make: rename("empty", "reg", "./"), reason: toc.ReasonUnsafeName, entry: "./"},
		{name: "below a regular file", make: add(&estargz.TOCEntry{Name: "etc/passwd/x", Type: "dir"}), reason: toc.ReasonUnsafeName, entry: "etc/passwd/x"},
		{name: "below a symlink", make: add(&estargz.TOCEntry{Name: "bin/sh/x", Type: "fifo"}), reason: toc.ReasonUnsafeName, entry: "bin/sh/x"},
		{name: "directory below a regular file, named with its slash", make: add(&estargz.TOCEntry{Name: "etc/passwd/x/", Type: "dir"}), reason: toc.ReasonUnsafeName, entry: "etc/passwd/x/"},
		{name: "first entry below a file in TOC order", reason: toc.ReasonUnsafeName, entry: "fifo/z", make: add(
			&estargz.TOCEntry{Name: "fifo/z", Type: "fifo"}, &estargz.TOCEntry{Name: "etc/passwd/a", Type: "fifo"})},

		// duplicate_name
		{name: "same name after cleaning", make: rename("caps", "reg", "./etc//passwd"), reason: toc.ReasonDuplicateName, entry: "./etc//passwd"},
		{name: "dir with and without slash", make: add(&estargz.TOCEntry{Name: "etc", Type: "dir"}), reason: toc.ReasonDuplicateName, entry: "etc"},
		{name: "two roots", make: add(&estargz.TOCEntry{Name: "./", Type: "dir"}, &estargz.TOCEntry{Name: ".", Type: "dir"}), reason: toc.ReasonDuplicateName, entry: "."},
		// Of two names repeated, the repeat that comes first in the TOC
		// is reported, whatever the names' order.
		{name: "first repeat in TOC order", reason: toc.ReasonDuplicateName, entry: "./zz", make: add(
			&estargz.TOCEntry{Name: "zz", Type: "dir"}, &estargz.TOCEntry{Name: "aa", Type: "dir"},
			&estargz.TOCEntry{Name: "./zz", Type: "dir"}, &estargz.TOCEntry{Name: "./aa", Type: "dir"}, &estargz.TOCEntry{Name: "aa/", Type: "dir"})},

		// bad_offset
		{name: "chunk at the TOC", reason: toc.ReasonBadOffset, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").Offset = 1 << 40
		})},
		{name: "negative chunk offset", reason: toc.ReasonBadOffset, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").Offset = -1
		})},
		{name: "chunks out of blob order", reason: toc.ReasonBadOffset, make: mutate(func(t *testing.T, j *estargz.JTOC) {
			a, b := find(t, j, "etc/passwd", "reg"), find(t, j, "caps", "reg")
			a.Offset, b.Offset = b.Offset, a.Offset
		})},
		{name: "chunks overlap in a stream", reason: toc.ReasonBadOffset, entry: "caps", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "caps", "reg").Offset = find(t, j, "bin/big", "reg").Offset
		})},
		{name: "negative inner offset", reason: toc.ReasonBadOffset, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").InnerOffset = -5
		})},
		{name: "offset on a directory", reason: toc.ReasonBadOffset, entry: "etc/", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/", "dir").Offset = 10
		})},
		{name: "footer points past the blob", reason: toc.ReasonBadOffset, make: func(t *testing.T) ([]byte, digest.Digest) {
			blob, d := baseBlob(t)
			return slices.Concat(blob[:len(blob)-estargz.FooterSize], footer(t, int64(len(blob)))), d
		}},

		// bad_size
		{name: "negative size", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "etc/passwd", "reg").Size = -1 }), reason: toc.ReasonBadSize, entry: "etc/passwd"},
		{name: "size on a directory", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "etc/", "dir").Size = 4096 }), reason: toc.ReasonBadSize, entry: "etc/"},
		{name: "size beyond what the stream can hold", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "etc/passwd", "reg").Size = 1 << 40 }), reason: toc.ReasonBadSize, entry: "etc/passwd"},
		{name: "gap between chunks", reason: toc.ReasonBadSize, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			chunksOf(t, j, "bin/big")[2].ChunkOffset++
		})},
		{name: "overlapping chunks", reason: toc.ReasonBadSize, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			chunksOf(t, j, "bin/big")[2].ChunkOffset--
		})},
		{name: "chunk beyond the file", reason: toc.ReasonBadSize, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			c := chunksOf(t, j, "bin/big")
			c[len(c)-1].ChunkSize = 1 << 20
		})},
		{name: "negative chunk size", reason: toc.ReasonBadSize, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			chunksOf(t, j, "bin/big")[1].ChunkSize = -1
		})},
		{name: "chunks do not cover the file", reason: toc.ReasonBadSize, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			last := chunksOf(t, j, "bin/big")
			j.Entries = slices.DeleteFunc(j.Entries, func(e *estargz.TOCEntry) bool { return e == last[len(last)-1] })
		})},
		{name: "first chunk not at 0", reason: toc.ReasonBadSize, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").ChunkOffset = 1
		})},

		// unverifiable
		{name: "no digest at all", reason: toc.ReasonUnverifiable, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			e := find(t, j, "etc/passwd", "reg")
			e.ChunkDigest, e.Digest = "", ""
		})},
		{name: "chunk without digest", reason: toc.ReasonUnverifiable, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			chunksOf(t, j, "bin/big")[3].ChunkDigest = ""
		})},

		// bad_link
		{name: "hard link to nothing", make: add(&estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "missing"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link to a directory", make: add(&estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "etc/"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link to the root", make: add(&estargz.TOCEntry{Name: "./", Type: "dir"}, &estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "."}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link to itself", make: add(&estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "./l"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link cycle", make: add(&estargz.TOCEntry{Name: "a", Type: "hardlink", LinkName: "b"}, &estargz.TOCEntry{Name: "b", Type: "hardlink", LinkName: "a"}), reason: toc.ReasonBadLink, entry: "a"},
		{name: "hard link escaping", make: add(&estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "../etc/passwd"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "hard link absolute", make: add(&estargz.TOCEntry{Name: "l", Type: "hardlink", LinkName: "/etc/passwd"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "symlink without target", make: add(&estargz.TOCEntry{Name: "l", Type: "symlink"}), reason: toc.ReasonBadLink, entry: "l"},
		{name: "symlink target with NUL", make: add(&estargz.TOCEntry{Name: "l", Type: "symlink", LinkName: "a\x00b"}), reason: toc.ReasonBadLink, entry: "l"},

		// unsupported_format
		{name: "zstd:chunked", reason: toc.ReasonUnsupportedFormat, make: func(t *testing.T) ([]byte, digest.Digest) {
			return buildBlob(t, baseEntries(), estargz.WithCompression(zstdCompression{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault}, &zstdchunked.Decompressor{}}))
		}},
		{name: "plain gzip layer", reason: toc.ReasonUnsupportedFormat, make: func(t *testing.T) ([]byte, digest.Digest) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(buildTar(t, baseEntries()))
			zw.Close()
			return buf.Bytes(), digest.FromString("toc")
		}},
		{name: "random bytes", make: rawBlob(randomBytes(4096)), reason: toc.ReasonUnsupportedFormat},
		{name: "blob smaller than a footer", make: rawBlob([]byte("tiny")), reason: toc.ReasonUnsupportedFormat},
		{name: "TOC version 2", make: rawTOC(`{"version":2,"entries":[]}`), reason: toc.ReasonUnsupportedFormat},

		// malformed
		{name: "invalid annotation", make: withDigest(rawTOC(`{"version":1}`), "sha256:nothex"), reason: toc.ReasonMalformed},
		{name: "empty annotation", make: withDigest(rawTOC(`{"version":1}`), ""), reason: toc.ReasonMalformed},
		{name: "not JSON", make: rawTOC(`{"version":1,"entries":[`), reason: toc.ReasonMalformed},
		{name: "not an object", make: rawTOC(`[1,2]`), reason: toc.ReasonMalformed},
		{name: "trailing data", make: rawTOC(`{"version":1}{}`), reason: toc.ReasonMalformed},
		{name: "repeated entries key", make: rawTOC(`{"version":1,"entries":[],"Entries":[{"name":"../x","type":"dir"}]}`), reason: toc.ReasonMalformed},
		// A key twice in an entry, also in another case, or invalid UTF-8:
		// encoding/json would take the last or replace the bytes, another
		// parser may not; a TOC that reads two ways is not served.
		{name: "repeated key in an entry", make: rawTOC(`{"version":1,"entries":[{"name":"a/","type":"dir","name":"b/"}]}`), reason: toc.ReasonMalformed},
		{name: "key repeated in another case", make: rawTOC(`{"version":1,"entries":[{"name":"a/","type":"dir","Name":"b/"}]}`), reason: toc.ReasonMalformed},
		{name: "invalid UTF-8", make: rawTOC("{\"version\":1,\"entries\":[{\"name\":\"a\xff/\",\"type\":\"dir\"}]}"), reason: toc.ReasonMalformed},
		{name: "entries not an array", make: rawTOC(`{"version":1,"entries":{}}`), reason: toc.ReasonMalformed},
		{name: "null entry", make: rawTOC(`{"version":1,"entries":[null]}`), reason: toc.ReasonMalformed, entry: "#0"},
		{name: "wrong field type", make: rawTOC(`{"version":1,"entries":[{"name":"a","type":"reg","size":"big"}]}`), reason: toc.ReasonMalformed},
		{name: "unknown type", make: add(&estargz.TOCEntry{Name: "sock", Type: "socket"}), reason: toc.ReasonMalformed, entry: "sock"},
		{name: "chunk first", make: rawTOC(`{"version":1,"entries":[{"type":"chunk","offset":1,"chunkSize":1}]}`), reason: toc.ReasonMalformed, entry: "#0"},
		{name: "chunk after a directory", make: add(&estargz.TOCEntry{Name: "d/", Type: "dir"}, &estargz.TOCEntry{Type: "chunk", Offset: 1, ChunkSize: 1}), reason: toc.ReasonMalformed},
		{name: "chunk naming another file", reason: toc.ReasonMalformed, entry: "bin/big", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			chunksOf(t, j, "bin/big")[1].Name = "etc/passwd"
		})},
		{name: "malformed chunk digest", reason: toc.ReasonMalformed, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").ChunkDigest = "sha256:xyz"
		})},
		{name: "uppercase digest", reason: toc.ReasonMalformed, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			e := find(t, j, "etc/passwd", "reg")
			e.ChunkDigest = "sha256:" + strings.ToUpper(e.ChunkDigest[7:])
		})},
		{name: "unknown digest algorithm", reason: toc.ReasonMalformed, entry: "etc/passwd", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "etc/passwd", "reg").Digest = "md5:d41d8cd98f00b204e9800998ecf8427e"
		})},
		{name: "negative mode", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "fifo", "fifo").Mode = -1 }), reason: toc.ReasonMalformed, entry: "fifo"},
		{name: "uid out of range", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "fifo", "fifo").UID = 1 << 33 }), reason: toc.ReasonMalformed, entry: "fifo"},
		{name: "device out of range", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "dev/null", "char").DevMajor = 1 << 20 }), reason: toc.ReasonMalformed, entry: "dev/null"},
		{name: "empty xattr name", make: mutate(func(t *testing.T, j *estargz.JTOC) { find(t, j, "caps", "reg").Xattrs[""] = []byte("v") }), reason: toc.ReasonMalformed, entry: "caps"},
		{name: "xattr value too large", make: mutate(func(t *testing.T, j *estargz.JTOC) {
			find(t, j, "caps", "reg").Xattrs["user.big"] = make([]byte, 65<<10)
		}), reason: toc.ReasonMalformed, entry: "caps"},
		{name: "corrupt TOC stream", reason: toc.ReasonMalformed, make: func(t *testing.T) ([]byte, digest.Digest) {
			blob, d := baseBlob(t)
			body, _ := splitBlob(t, blob)
			blob = slices.Clone(blob)
			blob[len(body)] ^= 0xff // gzip magic
			return blob, d
		}},
		{name: "TOC tar entry misnamed", reason: toc.ReasonMalformed, make: func(t *testing.T) ([]byte, digest.Digest) {
			tocJSON := []byte(`{"version":1}`)
			return slices.Concat(make([]byte, 8), tarGzip(t, "index.json", int64(len(tocJSON)), tocJSON), footer(t, 8)), digest.FromBytes(tocJSON)
		}},
		// Refused from the header alone, before a byte is inflated.
		{name: "TOC tar header claims 1 TiB", reason: toc.ReasonTOCTooLarge, make: func(t *testing.T) ([]byte, digest.Digest) {
			tocJSON := []byte(`{"version":1}`)
			return slices.Concat(make([]byte, 8), tarGzip(t, estargz.TOCTarName, 1<<40, tocJSON), footer(t, 8)), digest.FromBytes(tocJSON)
		}},
	}
}

// zstdCompression pairs zstdchunked's compressor and decompressor, as
// estargz.WithCompression wants both.
type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// tarGzip writes a gzip stream with one tar entry whose header claims size
// but whose content is data, without the tar trailer.
func tarGzip(t *testing.T, name string, size int64, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) == size {
		tw.Close()
	}
	zw.Close()
	return buf.Bytes()
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// countingSink counts the entries a streamed TOC hands on, and what it was
// told to expect.
type countingSink struct {
	entries, expected int
	expectedFirst     bool
}

func (s *countingSink) Expect(n int) { s.expected, s.expectedFirst = n, s.entries == 0 }

func (s *countingSink) Entry(e *estargz.TOCEntry) error {
	if e == nil {
		return errors.New("nil entry handed on")
	}
	s.entries++
	return nil
}

// TestFetchToRefusesHostileLayers runs every refusal through the stream a
// worker decodes into its tree (FetchTo), which must refuse as Fetch does:
// Fetch collects what FetchTo hands on, but a worker never sees more than
// the stream.
func TestFetchToRefusesHostileLayers(t *testing.T) {
	for _, tc := range refusalCases() {
		t.Run(tc.reason+"/"+tc.name, func(t *testing.T) {
			blob, tocDigest := tc.make(t)
			lim := toc.DefaultLimits()
			if tc.lim != nil {
				lim = tc.lim(lim)
			}
			var sink countingSink
			l, err := toc.FetchTo(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim, &sink)
			if l != nil {
				t.Errorf("FetchTo returned a layer with its refusal")
			}
			assertRefused(t, err, blobDigest(blob), tc.reason, tc.entry)
			if sink.entries > lim.MaxEntries {
				t.Errorf("%d entries handed on, limit %d", sink.entries, lim.MaxEntries)
			}
		})
	}
}

// TestKeysMatchInAnyCase: keys match as they do for encoding/json (and so
// for every other reader of eStargz TOCs): in any case, unknown keys
// ignored.
func TestKeysMatchInAnyCase(t *testing.T) {
	blob, tocDigest := rawTOC(`{"VERSION":1,"Entries":[{"NAME":"d/","Type":"dir","Mode":493,"comment":"ignored","na_me":"x/"}],"other":[1]}`)(t)
	l, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got := l.TOC.Entries; len(got) != 1 || got[0].Name != "d/" || got[0].Type != "dir" || got[0].Mode != 493 {
		t.Errorf("entries %+v, want the directory d/ with mode 493", got)
	}
	// null entries are no entries, as for encoding/json.
	blob, tocDigest = rawTOC(`{"version":1,"entries":null}`)(t)
	if l, err = toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits()); err != nil || len(l.TOC.Entries) != 0 {
		t.Errorf("a TOC with null entries: %v, %v; want an empty layer", l, err)
	}
}

// TestFetchToHandsOnEveryEntry checks the stream of a good layer: every
// entry handed on, once, after the sink was told how many to expect.
func TestFetchToHandsOnEveryEntry(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	want, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var sink countingSink
	l, err := toc.FetchTo(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits(), &sink)
	if err != nil {
		t.Fatal(err)
	}
	if l.TOC != nil {
		t.Error("FetchTo kept the TOC")
	}
	if sink.entries != len(want.TOC.Entries) {
		t.Errorf("%d entries handed on, the TOC has %d", sink.entries, len(want.TOC.Entries))
	}
	if !sink.expectedFirst || sink.expected < 0 || sink.expected > toc.DefaultLimits().MaxEntries {
		t.Errorf("expected %d entries (told before the first: %v)", sink.expected, sink.expectedFirst)
	}
}

func TestFetchRefusesHostileLayers(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range refusalCases() {
		t.Run(tc.reason+"/"+tc.name, func(t *testing.T) {
			blob, tocDigest := tc.make(t)
			lim := toc.DefaultLimits()
			if tc.lim != nil {
				lim = tc.lim(lim)
			}
			_, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim)
			assertRefused(t, err, blobDigest(blob), tc.reason, tc.entry)
			seen[tc.reason] = true
		})
	}
	for _, r := range allReasons {
		if !seen[r] {
			t.Errorf("no case for reason %s", r)
		}
	}
}

var allReasons = []string{
	toc.ReasonTOCDigestMismatch, toc.ReasonTOCTooLarge, toc.ReasonTooManyEntries, toc.ReasonUnsafeName,
	toc.ReasonDuplicateName, toc.ReasonBadOffset, toc.ReasonBadSize, toc.ReasonUnverifiable,
	toc.ReasonBadLink, toc.ReasonUnsupportedFormat, toc.ReasonMalformed,
}

func assertRefused(t *testing.T, err error, layer digest.Digest, reason, entry string) {
	t.Helper()
	var re *toc.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v, want a *RefusedError (%s)", err, reason)
	}
	if re.Reason != reason {
		t.Fatalf("reason = %s, want %s (%v)", re.Reason, reason, err)
	}
	if entry != "" && re.Entry != entry {
		t.Errorf("entry = %q, want %q (%v)", re.Entry, entry, err)
	}
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("refusal %v is not errdefs.ErrInvalidArgument", err)
	}
	msg := err.Error()
	wantName := layer.String()
	if layer == "" {
		wantName = "(unknown)"
	}
	if re.Layer != layer || !strings.Contains(msg, wantName) || !strings.Contains(msg, reason) {
		t.Errorf("error %q does not name layer %s and reason %s", msg, layer, reason)
	}
	if entry != "" && !strings.Contains(msg, fmt.Sprintf("%q", entry)) {
		t.Errorf("error %q does not name entry %q", msg, entry)
	}
}

func TestFetchChecksCompressedSizeBeforeFetching(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	body, _ := splitBlob(t, blob)
	compressed := int64(len(blob) - len(body) - estargz.FooterSize)

	lim := toc.DefaultLimits()
	lim.MaxCompressedSize = compressed - 1
	src := newSource(blob)
	_, err := toc.Fetch(testCtx(t), src, blobDigest(blob), tocDigest, lim)
	assertRefused(t, err, blobDigest(blob), toc.ReasonTOCTooLarge, "")
	if requests, n := src.stats(); requests != 1 || n != estargz.FooterSize {
		t.Errorf("fetched %d bytes in %d requests, want only the %d-byte footer", n, requests, estargz.FooterSize)
	}

	lim.MaxCompressedSize = compressed
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim); err != nil {
		t.Errorf("TOC at exactly the limit: %v", err)
	}
}

func TestFetchLimitsAreInclusive(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	l, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	lim := toc.DefaultLimits()
	lim.MaxSize, lim.MaxEntries = int64(len(tocJSON(t, l))), len(l.TOC.Entries)
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim); err != nil {
		t.Errorf("TOC at exactly the limits: %v", err)
	}
}

// manyEntries forges a layer of n directories.
func manyEntries(t testing.TB, n int) ([]byte, digest.Digest) {
	var b strings.Builder
	b.WriteString(`{"version":1,"entries":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"d%06d/","type":"dir","mode":493}`, i)
	}
	b.WriteString(`]}`)
	return forgeRaw(t, make([]byte, 64), []byte(b.String()))
}

func TestFetchEntryLimit(t *testing.T) {
	const limit = 100_000
	blob, tocDigest := manyEntries(t, limit+1)
	lim := toc.DefaultLimits()
	lim.MaxEntries = limit
	_, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim)
	assertRefused(t, err, blobDigest(blob), toc.ReasonTooManyEntries, "")

	lim.MaxEntries = limit + 1
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, lim); err != nil {
		t.Errorf("%d entries with a limit of %d: %v", limit+1, limit+1, err)
	}
}

func TestFetchAcceptsSingleChunkWithFileDigestOnly(t *testing.T) {
	// Older stargz TOCs verify a one-chunk file with its "digest" alone.
	blob, _ := baseBlob(t)
	body, j := splitBlob(t, blob)
	find(t, j, "etc/passwd", "reg").ChunkDigest = ""
	blob, tocDigest := forge(t, body, j)
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	good, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		layer  func() *toc.Layer
		reason string
	}{
		{name: "fetched layer", layer: func() *toc.Layer { return good }},
		{name: "nil layer", layer: func() *toc.Layer { return nil }, reason: toc.ReasonMalformed},
		{name: "nil TOC", layer: func() *toc.Layer { l := *good; l.TOC = nil; return &l }, reason: toc.ReasonMalformed},
		{name: "nil entry", layer: func() *toc.Layer {
			l := *good
			l.TOC = &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{nil}}
			return &l
		}, reason: toc.ReasonMalformed},
		{name: "TOC offset past the blob", layer: func() *toc.Layer { l := *good; l.TOCOffset = l.BlobSize; return &l }, reason: toc.ReasonBadOffset},
		{name: "no blob", layer: func() *toc.Layer { l := *good; l.BlobSize = 0; return &l }, reason: toc.ReasonBadSize},
		{name: "chunk beyond a smaller TOC offset", layer: func() *toc.Layer { l := *good; l.TOCOffset = 10; return &l }, reason: toc.ReasonBadOffset},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.layer()
			err := toc.Validate(l, toc.DefaultLimits())
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var layer digest.Digest
			if l != nil {
				layer = l.BlobDigest
			}
			var re *toc.RefusedError
			if !errors.As(err, &re) || re.Reason != tc.reason || re.Layer != layer {
				t.Fatalf("Validate error = %v, want %s refusal of %s", err, tc.reason, layer)
			}
		})
	}
}

func TestRefusedErrorIsInvalidArgumentAndKeepsCause(t *testing.T) {
	cause := errors.New("cause")
	err := error(&toc.RefusedError{Layer: "sha256:abc", Reason: toc.ReasonBadLink, Entry: "a\nb", Err: cause})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !errors.Is(err, cause) {
		t.Errorf("%v: errors.Is(ErrInvalidArgument) and errors.Is(cause) must hold", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%q: entry names must be quoted", err.Error())
	}
}

// TestValidateRefusesHugeChunk guards the reader's memory: it holds a whole
// decompressed chunk to verify it, so a TOC may not claim a chunk beyond
// toc.MaxChunkSize even when the file is that large.
func TestValidateRefusesHugeChunk(t *testing.T) {
	size := int64(toc.MaxChunkSize + 1)
	l := &toc.Layer{
		BlobDigest: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
		BlobSize:   1 << 30,
		TOCOffset:  1 << 29,
		TOC: &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{{
			Name: "big", Type: "reg", Size: size, Mode: 0o644, Offset: 0,
			Digest:      "sha256:2222222222222222222222222222222222222222222222222222222222222222",
			ChunkDigest: "sha256:2222222222222222222222222222222222222222222222222222222222222222",
		}}},
	}
	err := toc.Validate(l, toc.DefaultLimits())
	var refused *toc.RefusedError
	if !errors.As(err, &refused) || refused.Reason != toc.ReasonBadSize {
		t.Fatalf("Validate = %v, want a %s refusal", err, toc.ReasonBadSize)
	}
}
