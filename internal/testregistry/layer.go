package testregistry

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// Layer is an eStargz layer built in the test, and what it holds.
type Layer struct {
	Blob      []byte
	Digest    digest.Digest
	TOCDigest digest.Digest
	Files     map[string][]byte // regular files by path
	Links     map[string]string // symlinks by path
	Top       []string          // names in the root directory, sorted
}

// ChunkSize is the eStargz chunk size of the layer; BigFileSize, the size
// of its usr/bin/big.bin, spans several chunks.
const (
	ChunkSize   = 64 << 10
	BigFileSize = 5*ChunkSize + 1234
)

// BuildLayer writes a tar with a few files (one of them spanning several
// chunks) and converts it with estargz.Build. salt makes the contents, and
// so the digests, differ between layers.
func BuildLayer(t testing.TB, salt string) *Layer {
	t.Helper()
	l := &Layer{
		Files: map[string][]byte{
			"etc/hello.txt":    []byte("hello from lazyfs " + salt + "\n"),
			"etc/empty":        nil,
			"usr/bin/big.bin":  Noise(BigFileSize, salt),
			"usr/share/a.conf": []byte(strings.Repeat("key = value\n", 100)),
		},
		Links: map[string]string{"hello": "etc/hello.txt"},
		Top:   []string{"etc", "hello", "usr"},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, d := range []string{"etc/", "usr/", "usr/bin/", "usr/share/"} {
		WriteTar(t, tw, &tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}, nil)
	}
	for _, name := range []string{"etc/hello.txt", "etc/empty", "usr/bin/big.bin", "usr/share/a.conf"} {
		body := l.Files[name]
		WriteTar(t, tw, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime}, body)
	}
	WriteTar(t, tw, &tar.Header{Name: "hello", Typeflag: tar.TypeSymlink, Linkname: "etc/hello.txt", Mode: 0o777, ModTime: mtime}, nil)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))), estargz.WithChunkSize(ChunkSize))
	if err != nil {
		t.Fatalf("estargz.Build: %v", err)
	}
	defer b.Close()
	if l.Blob, err = io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	l.Digest = digest.FromBytes(l.Blob)
	l.TOCDigest = b.TOCDigest()
	return l
}

// WriteTar writes one PAX entry, as BuildLayer does for its own.
func WriteTar(t testing.TB, tw *tar.Writer, h *tar.Header, body []byte) {
	t.Helper()
	h.Format = tar.FormatPAX
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
}

// Noise is n bytes of deterministic, poorly compressible content.
func Noise(n int, salt string) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for _, c := range salt {
		x = x*31 + uint32(c)
	}
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
