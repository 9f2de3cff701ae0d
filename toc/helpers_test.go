package toc_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// fakeSource serves a blob from memory and counts range requests and bytes.
type fakeSource struct {
	blob []byte

	mu       sync.Mutex
	requests int
	bytes    int64
	// failOn makes request number failOn (1-based) fail with err.
	failOn int
	err    error
	// short makes every read return one byte less, without an error.
	short bool
}

func newSource(blob []byte) *fakeSource { return &fakeSource{blob: blob} }

func (s *fakeSource) Size() int64 { return int64(len(s.blob)) }

func (s *fakeSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.failOn == s.requests {
		return 0, s.err
	}
	if off < 0 || off > int64(len(s.blob)) {
		return 0, fmt.Errorf("range %d+%d outside %d-byte blob", off, len(p), len(s.blob))
	}
	want := p
	if s.short && len(want) > 0 {
		want = want[:len(want)-1]
	}
	n := copy(want, s.blob[off:])
	s.bytes += int64(n)
	if n < len(p) {
		if s.short {
			return n, nil
		}
		return n, io.EOF
	}
	return n, nil
}

func (s *fakeSource) stats() (requests int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.bytes
}

// tarEntry describes one entry of a test layer.
type tarEntry struct {
	name   string
	typ    byte
	body   []byte
	link   string
	mode   int64
	xattrs map[string]string
	major  int64
	minor  int64
}

func reg(name, body string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, body: []byte(body)}
}
func dir(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, link: target}
}
func hardlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeLink, link: target}
}

func buildTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Linkname: e.link,
			Mode:     e.mode,
			Size:     int64(len(e.body)),
			ModTime:  time.Unix(1700000000, 0),
			Devmajor: e.major,
			Devminor: e.minor,
			Format:   tar.FormatPAX,
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatalf("tar body %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildBlob turns a tar into an eStargz blob with estargz.Build.
func buildBlob(t testing.TB, entries []tarEntry, opts ...estargz.Option) ([]byte, digest.Digest) {
	t.Helper()
	tarb := buildTar(t, entries)
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarb), 0, int64(len(tarb))), opts...)
	if err != nil {
		t.Fatalf("estargz.Build: %v", err)
	}
	defer b.Close()
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("reading built blob: %v", err)
	}
	return blob, b.TOCDigest()
}

// bigBody is deterministic, poorly compressible content spanning many chunks.
func bigBody(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return string(b)
}

const testChunkSize = 16 << 10

// baseEntries is a layer with every entry type eStargz knows.
func baseEntries() []tarEntry {
	return []tarEntry{
		dir("etc/"),
		reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		hardlink("etc/passwd.bak", "etc/passwd"),
		dir("bin/"),
		reg("bin/big", bigBody(5*testChunkSize+123)),
		symlink("bin/sh", "/bin/busybox"),
		symlink("bin/up", "../../../../outside"),
		reg("empty", ""),
		{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
		{name: "fifo", typ: tar.TypeFifo},
		{name: "caps", typ: tar.TypeReg, body: []byte("x"), xattrs: map[string]string{"security.capability": "\x01\x02", "user.note": "hi"}},
		reg(".wh.gone", ""),
	}
}

// baseBlob is an eStargz blob of baseEntries with small chunks, so that
// "bin/big" has several.
// It is built once: BestCompression of "bin/big" is the slow part of many
// tests. Callers must not modify the returned bytes.
func baseBlob(t testing.TB) ([]byte, digest.Digest) {
	baseOnce.Do(func() {
		baseBytes, baseDigest = buildBlob(t, baseEntries(), estargz.WithChunkSize(testChunkSize))
	})
	if baseBytes == nil {
		t.Fatal("building the base blob failed")
	}
	return baseBytes, baseDigest
}

var (
	baseOnce   sync.Once
	baseBytes  []byte
	baseDigest digest.Digest
)

// splitBlob returns the blob's body (everything before the TOC) and its TOC
// with raw names.
func splitBlob(t testing.TB, blob []byte) ([]byte, *estargz.JTOC) {
	t.Helper()
	off, footerSize, err := estargz.OpenFooter(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatalf("OpenFooter: %v", err)
	}
	jtoc, _, err := new(estargz.GzipDecompressor).ParseTOC(bytes.NewReader(blob[off : int64(len(blob))-footerSize]))
	if err != nil {
		t.Fatalf("ParseTOC: %v", err)
	}
	return blob[:off], jtoc
}

// footer returns the 51-byte eStargz footer pointing at tocOffset, as
// estargz writes it.
func footer(t testing.TB, tocOffset int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&buf, tocOffset, &estargz.JTOC{Version: 1}, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[buf.Len()-estargz.FooterSize:]
}

// legacyFooter returns the 47-byte footer of the original stargz format.
func legacyFooter(tocOffset int64) []byte {
	return estargz.CreateGzipFooter([]byte(fmt.Sprintf("%016xSTARGZ", tocOffset)))
}

// compressTOC wraps TOC JSON the way eStargz does: a gzip stream holding a
// tar with one entry, stargz.index.json.
func compressTOC(t testing.TB, tocJSON []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: estargz.TOCTarName, Size: int64(len(tocJSON)), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(tocJSON); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// forgeRaw assembles body + compressed TOC JSON + footer, so a test can
// produce any TOC, and returns the blob and the TOC JSON's digest.
func forgeRaw(t testing.TB, body, tocJSON []byte) ([]byte, digest.Digest) {
	t.Helper()
	return forgeRawLevel(t, body, tocJSON, gzip.DefaultCompression)
}

// forgeRawLevel is forgeRaw with the TOC compressed at a gzip level.
func forgeRawLevel(t testing.TB, body, tocJSON []byte, level int) ([]byte, digest.Digest) {
	t.Helper()
	blob := slices.Concat(body, compressTOC(t, tocJSON, level), footer(t, int64(len(body))))
	return blob, digest.FromBytes(tocJSON)
}

// forge is forgeRaw for a TOC given as a JTOC, marshalled as estargz does.
func forge(t testing.TB, body []byte, jtoc *estargz.JTOC) ([]byte, digest.Digest) {
	t.Helper()
	tocJSON, err := json.MarshalIndent(jtoc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return forgeRaw(t, body, tocJSON)
}

// find returns the first entry of jtoc with the raw name and type.
func find(t testing.TB, jtoc *estargz.JTOC, name, typ string) *estargz.TOCEntry {
	t.Helper()
	for _, e := range jtoc.Entries {
		if e.Name == name && e.Type == typ {
			return e
		}
	}
	t.Fatalf("no %s entry %q in TOC", typ, name)
	return nil
}

// chunksOf returns the "reg" entry name and the "chunk" entries after it.
func chunksOf(t testing.TB, jtoc *estargz.JTOC, name string) []*estargz.TOCEntry {
	t.Helper()
	for i, e := range jtoc.Entries {
		if e.Name != name || e.Type != "reg" {
			continue
		}
		out := []*estargz.TOCEntry{e}
		for _, c := range jtoc.Entries[i+1:] {
			if c.Type != "chunk" {
				break
			}
			out = append(out, c)
		}
		return out
	}
	t.Fatalf("no regular file %q in TOC", name)
	return nil
}

func blobDigest(blob []byte) digest.Digest { return digest.FromBytes(blob) }

// tocJSON returns the TOC JSON inside l's compressed TOC.
func tocJSON(t testing.TB, l *toc.Layer) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(l.TOCCompressed))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
