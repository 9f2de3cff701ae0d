package lazyfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/chunks"
)

// testChunkSize makes multi-chunk files small enough for fast tests.
const testChunkSize = 64 << 10

// testLayer is a layer built in the test: the original tar and its eStargz
// blob with the parsed TOC.
type testLayer struct {
	tar       []byte
	blob      []byte
	toc       *estargz.JTOC
	tocOffset int64
}

// tarEntry is one header of a test tar, with its contents.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mainLayerEntries covers every kind of entry a layer can hold.
func mainLayerEntries() []tarEntry {
	t0 := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }
	dir := func(name string, mode int64, i int) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: at(i)}}
	}
	file := func(name string, mode int64, i int, data []byte) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: at(i), Size: int64(len(data))}, data: data}
	}
	entries := []tarEntry{
		dir("./", 0o755, 0),
		file(".wh.gone", 0o644, 1, nil),
		dir("bin/", 0o755, 2),
		file("bin/su", 0o4755, 3, []byte("#!/bin/su\n")),
		file("bin/busybox", 0o755, 4, payload(1, 5*testChunkSize+123)),
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox", ModTime: at(5), Mode: 0o777}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/ash", Linkname: "bin/busybox", ModTime: at(4), Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/dangling", Linkname: "/nowhere/at/all", ModTime: at(6), Mode: 0o777}},
		dir("tmp/", 0o1777, 7),
		file("data/empty", 0o600, 8, nil), // data/ is implied
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "data/small.txt", Mode: 0o640, ModTime: at(9), Size: 13, Uid: 1000, Gid: 1001,
			PAXRecords: map[string]string{
				"SCHILY.xattr.user.comment": "hello",
				"SCHILY.xattr.user.binary":  "\x00\x01\xff",
				"SCHILY.xattr.trusted.evil": "y",
			}}, data: []byte("hello, world\n")},
		file("data/exact", 0o644, 10, payload(2, 2*testChunkSize)),
		file("data/one-less", 0o644, 11, payload(3, testChunkSize-1)),
		file("data/sgid", 0o2711, 12, payload(4, 1000)),
		dir("dev/", 0o755, 13),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: at(14)}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/big", Mode: 0o600, Devmajor: 300, Devminor: 70000, ModTime: at(14)}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0, Gid: 6, ModTime: at(15)}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644, ModTime: at(16)}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "opq/", Mode: 0o750, Uid: 5, Gid: 6, ModTime: at(17)}},
		file("opq/.wh..wh..opq", 0o644, 17, nil),
		file("opq/new.txt", 0o644, 18, []byte("new\n")),
		file("deep/a/b/c/d.txt", 0o644, 19, payload(5, 3*testChunkSize+1)),
		dir("many/", 0o755, 20),
	}
	for i := range 300 {
		entries = append(entries, file(fmt.Sprintf("many/file-with-a-longer-name-%03d", i), 0o644, 21, payload(uint64(100+i), i)))
	}
	return entries
}

// writeTar serializes entries.
func writeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildLayer turns a tar into an eStargz blob and parses its TOC as a
// worker would get it: raw, straight from the JSON.
func buildLayer(t testing.TB, tarBytes []byte, opts ...estargz.Option) *testLayer {
	t.Helper()
	opts = append([]estargz.Option{estargz.WithChunkSize(testChunkSize)}, opts...)
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarBytes), 0, int64(len(tarBytes))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	blobBytes, err := io.ReadAll(blob)
	if err != nil {
		t.Fatal(err)
	}
	sr := io.NewSectionReader(bytes.NewReader(blobBytes), 0, int64(len(blobBytes)))
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	tocBytes := blobBytes[tocOffset : int64(len(blobBytes))-footerSize]
	toc, _, err := new(estargz.GzipDecompressor).ParseTOC(bytes.NewReader(tocBytes))
	if err != nil {
		t.Fatal(err)
	}
	return &testLayer{tar: tarBytes, blob: blobBytes, toc: toc, tocOffset: tocOffset}
}

// mainLayers holds mainLayer's blobs, one per minimum chunk size.
var mainLayers struct {
	mu     sync.Mutex
	layers map[int]*testLayer
}

// mainLayer returns the eStargz layer of mainLayerEntries, built with
// chunks of at least minChunkSize bytes (0: one stream per chunk). It is
// built once per test binary: estargz.Build takes about half a second for
// it, which each of the mount tests used to pay again. Callers must not
// change what it returns.
func mainLayer(t testing.TB, minChunkSize int) *testLayer {
	t.Helper()
	mainLayers.mu.Lock()
	defer mainLayers.mu.Unlock()
	if l := mainLayers.layers[minChunkSize]; l != nil {
		return l
	}
	var opts []estargz.Option
	if minChunkSize > 0 {
		opts = append(opts, estargz.WithMinChunkSize(minChunkSize))
	}
	l := buildLayer(t, writeTar(t, mainLayerEntries()), opts...)
	if mainLayers.layers == nil {
		mainLayers.layers = make(map[int]*testLayer)
	}
	mainLayers.layers[minChunkSize] = l
	return l
}

func (l *testLayer) tree(t testing.TB) *Tree {
	t.Helper()
	tr, err := NewTree(l.toc, l.tocOffset)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// blobReader is the test's FileReader: it decompresses chunks from the
// in-memory blob and verifies each against its digest, as the worker's
// reader must.
type blobReader struct {
	blob []byte

	mu sync.Mutex
	// fail makes reads of chunks with these digests fail.
	fail  map[digest.Digest]bool
	reads int
}

func (r *blobReader) failChunk(d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail == nil {
		r.fail = make(map[digest.Digest]bool)
	}
	r.fail[d] = true
}

func (r *blobReader) ReadAt(ctx context.Context, file []chunks.Chunk, p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reads++
	r.mu.Unlock()
	n := 0
	for _, c := range file {
		if c.Offset+c.Size <= off || c.Offset >= off+int64(len(p)) {
			continue
		}
		data, err := r.chunk(c)
		if err != nil {
			return n, err
		}
		start := max(off, c.Offset)
		end := min(off+int64(len(p)), c.Offset+c.Size)
		n += copy(p[start-off:end-off], data[start-c.Offset:end-c.Offset])
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	return n, nil
}

// chunk returns the verified, decompressed bytes of c.
func (r *blobReader) chunk(c chunks.Chunk) ([]byte, error) {
	r.mu.Lock()
	fail := r.fail[c.Digest]
	r.mu.Unlock()
	if fail {
		return nil, errors.New("injected chunk failure")
	}
	if c.BlobOffset+c.BlobSize > int64(len(r.blob)) {
		return nil, fmt.Errorf("chunk [%d, +%d) beyond the blob", c.BlobOffset, c.BlobSize)
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.blob[c.BlobOffset : c.BlobOffset+c.BlobSize]))
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, zr, c.InnerOffset); err != nil {
		return nil, err
	}
	data := make([]byte, c.Size)
	if _, err := io.ReadFull(zr, data); err != nil {
		return nil, err
	}
	if got := digest.FromBytes(data); got != c.Digest {
		return nil, fmt.Errorf("chunk digest %s, want %s", got, c.Digest)
	}
	return data, nil
}

// sha256Of returns the hex SHA-256 of b.
func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return fmt.Sprintf("%x", s[:])
}
