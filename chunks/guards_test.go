package chunks

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// The tests in this file guard the checks that keep wrong bytes from a
// reader: each fails when its check is removed or inverted.

// failedRead asserts that a read failed with want, returned no bytes and
// left p untouched.
func failedRead(t *testing.T, n int, err error, p []byte, want error) {
	t.Helper()
	if !errors.Is(err, want) || n != 0 {
		t.Fatalf("ReadAt = %d, %v; want 0, %v", n, err, want)
	}
	if !bytes.Equal(p, bytes.Repeat([]byte{0xAA}, len(p))) {
		t.Error("p was written to although the read failed")
	}
}

// TestDigestMismatchIsVerificationError guards the chunk digest comparison
// in decodeStream: a stream that decompresses cleanly (gzip's own CRC
// holds) to bytes other than the TOC's digest names is never served. It
// is what a registry serving another blob, or a TOC and blob that do not
// belong together, look like.
func TestDigestMismatchIsVerificationError(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(30_000, 21)}}, estargz.WithChunkSize(10_000))
	for _, tc := range []struct {
		name   string
		digest func(c Chunk) digest.Digest
	}{
		{"digest of other bytes", func(Chunk) digest.Digest { return digest.FromString("other bytes") }},
		{"digest of the next chunk", func(Chunk) digest.Digest { return l.files["f"][2].Digest }},
		{"sha512 of other bytes", func(Chunk) digest.Digest { return digest.SHA512.FromString("other") }},
		{"malformed digest", func(Chunk) digest.Digest { return "sha256:abc" }},
		{"no digest", func(Chunk) digest.Digest { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := append([]Chunk(nil), l.files["f"]...)
			file[1].Digest = tc.digest(file[1])
			src := &memSource{blob: l.blob}
			r := NewReader(src, Options{LayerDigest: testLayerDigest})
			// The second read may prefetch the bad chunk in the
			// background, logging to this test: wait for it.
			defer r.waitBackground()
			p := bytes.Repeat([]byte{0xAA}, 100)
			n, err := r.ReadAt(ctx, file, p, file[1].Offset)
			failedRead(t, n, err, p, ErrVerification)
			if !errdefs.IsDataLoss(err) {
				t.Errorf("err = %v, want class data loss", err)
			}
			// The chunks around it are fine and still served.
			q := make([]byte, 100)
			if n, err := r.ReadAt(ctx, file, q, 0); n != len(q) || err != nil || !bytes.Equal(q, l.data["f"][:100]) {
				t.Errorf("read of a good chunk = %d, %v", n, err)
			}
		})
	}
}

// TestChunkSizeMustMatchStream guards the exact-size decode: a chunk list
// that claims more bytes than the stream holds fails, and so does one that
// claims fewer (its digest then covers other bytes).
func TestChunkSizeMustMatchStream(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 22)}})
	for _, delta := range []int64{+1, -1} {
		file := append([]Chunk(nil), l.files["f"]...)
		if len(file) != 1 {
			t.Fatalf("%d chunks, want 1", len(file))
		}
		file[0].Size += delta
		r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest})
		p := bytes.Repeat([]byte{0xAA}, 10)
		n, err := r.ReadAt(ctx, file, p, 0)
		failedRead(t, n, err, p, ErrVerification)
	}
}

// TestInnerOffsetBeyondStream guards the skip to a chunk inside a shared
// stream: a stream that ends before the chunk starts is a verification
// failure, not a short chunk.
func TestInnerOffsetBeyondStream(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 23)}})
	file := append([]Chunk(nil), l.files["f"]...)
	file[0].InnerOffset = 1 << 20
	r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest})
	p := bytes.Repeat([]byte{0xAA}, 10)
	n, err := r.ReadAt(ctx, file, p, 0)
	failedRead(t, n, err, p, ErrVerification)
}

// TestCachedChunkOfAnotherSize guards the size check on memory cache hits:
// a chunk list that names a cached digest with another size is not served
// the cached bytes (which would not fill its range), it is verified again.
func TestCachedChunkOfAnotherSize(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 24)}})
	file := l.files["f"]
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	if _, err := r.ReadAt(ctx, file, make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	liar := append([]Chunk(nil), file...)
	liar[0].Size *= 2
	p := bytes.Repeat([]byte{0xAA}, len(l.data["f"])+10)
	n, err := r.ReadAt(ctx, liar, p, 0)
	failedRead(t, n, err, p, ErrVerification)
}

// shortSource returns one byte less than asked, without an error.
type shortSource struct{ blob []byte }

func (s shortSource) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return copy(p[:len(p)-1], s.blob[off:]), nil
}

// TestShortReadWithoutError guards the length check of a fetch: a source
// that returns fewer bytes than asked without saying why fails the read.
func TestShortReadWithoutError(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(5000, 25)}})
	r := NewReader(shortSource{l.blob}, Options{LayerDigest: testLayerDigest})
	p := bytes.Repeat([]byte{0xAA}, 10)
	n, err := r.ReadAt(ctx, l.files["f"], p, 0)
	failedRead(t, n, err, p, io.ErrUnexpectedEOF)
}

// TestUncoveredRanges guards covering: a read whose range the chunk list
// does not cover in full, or covers with impossible chunks, is refused
// before anything is fetched.
func TestUncoveredRanges(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	d := digest.FromString("x")
	c0 := Chunk{Offset: 0, Size: 10, BlobOffset: 0, BlobSize: 20, Digest: d}
	c1 := Chunk{Offset: 10, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}
	for _, tc := range []struct {
		name string
		file []Chunk
		off  int64
		len  int
	}{
		{"read inside a gap", []Chunk{c0, {Offset: 20, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 12, 3},
		{"read ending in a gap", []Chunk{c0, {Offset: 20, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5, 10},
		{"one byte in a gap", []Chunk{c0, {Offset: 20, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 12, 1},
		{"last byte in a gap", []Chunk{c0, {Offset: 20, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5, 6},
		{"read from a gap into a chunk", []Chunk{c0, {Offset: 20, Size: 10, BlobOffset: 20, BlobSize: 20, Digest: d}}, 15, 10},
		{"first chunk after the read", []Chunk{{Offset: 1, Size: 10, BlobOffset: 0, BlobSize: 20, Digest: d}}, 0, 5},
		{"negative blob size", []Chunk{{Offset: 0, Size: 10, BlobOffset: 0, BlobSize: -1, Digest: d}}, 0, 5},
		{"negative blob offset", []Chunk{c0, {Offset: 10, Size: 10, BlobOffset: -20, BlobSize: 20, Digest: d}}, 5, 10},
		{"negative inner offset", []Chunk{c0, {Offset: 10, Size: 10, BlobOffset: 20, BlobSize: 20, InnerOffset: -1, Digest: d}}, 5, 10},
		{"second chunk overlaps the first", []Chunk{c0, {Offset: 9, Size: 11, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5, 10},
		{"second chunk after the first", []Chunk{c0, {Offset: 11, Size: 9, BlobOffset: 20, BlobSize: 20, Digest: d}}, 5, 10},
		{"valid list, negative offset", []Chunk{c0, c1}, -1, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{blob: make([]byte, 100)}
			r := NewReader(src, Options{LayerDigest: testLayerDigest})
			p := bytes.Repeat([]byte{0xAA}, tc.len)
			n, err := r.ReadAt(ctx, tc.file, p, tc.off)
			failedRead(t, n, err, p, errdefs.ErrInvalidArgument)
			if n := len(src.spans()); n != 0 {
				t.Errorf("%d source calls for a range the chunk list does not cover", n)
			}
		})
	}
}

// TestReadAtFileEdges guards the bounds of a read against the file's size:
// at the end there is nothing and io.EOF, past it too, and a read that
// crosses it returns the bytes up to it with io.EOF.
func TestReadAtFileEdges(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(3000, 26)}}, estargz.WithChunkSize(1000))
	file, data := l.files["f"], l.data["f"]
	size := int64(len(data))
	r := NewReader(&memSource{blob: l.blob}, Options{LayerDigest: testLayerDigest})
	for _, tc := range []struct {
		off     int64
		len     int
		wantN   int
		wantErr error
	}{
		{off: size - 1, len: 1, wantN: 1},
		{off: size - 1, len: 2, wantN: 1, wantErr: io.EOF},
		{off: size, len: 1, wantErr: io.EOF},
		{off: size + 1, len: 1, wantErr: io.EOF},
		{off: 0, len: 0},
		{off: 999, len: 2, wantN: 2},
		{off: 1000, len: 1000, wantN: 1000},
	} {
		p := make([]byte, tc.len)
		n, err := r.ReadAt(ctx, file, p, tc.off)
		if n != tc.wantN || err != tc.wantErr {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tc.len, tc.off, n, err, tc.wantN, tc.wantErr)
			continue
		}
		if !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d): wrong bytes", tc.len, tc.off)
		}
	}
	if n, err := r.ReadAt(ctx, nil, make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt of an empty file = %d, %v; want 0, EOF", n, err)
	}
}

// TestDecodeStreamInAnyOrder guards the restart of a shared stream: chunks
// of one stream are decoded right whatever their order, each from its own
// inner offset.
func TestDecodeStreamInAnyOrder(t *testing.T) {
	l := buildLayer(t, []testFile{{"f", fileData(20_000, 27)}}, estargz.WithChunkSize(1000), estargz.WithMinChunkSize(50_000))
	file := l.files["f"]
	off := file[0].BlobOffset
	var cs []Chunk
	for _, c := range file {
		if c.BlobOffset == off {
			cs = append(cs, c)
		}
	}
	if len(cs) < 3 {
		t.Fatalf("%d chunks in the first stream, want several", len(cs))
	}
	// Last first, then the first, then the middle one.
	order := []Chunk{cs[len(cs)-1], cs[0], cs[len(cs)/2], cs[len(cs)/2]}
	datas, errs := make([][]byte, len(order)), make([]error, len(order))
	r := NewReader(nil, Options{})
	r.decodeStream(order, l.blob[off:off+cs[0].BlobSize], datas, errs)
	for i, c := range order {
		if errs[i] != nil || !bytes.Equal(datas[i], l.data["f"][c.Offset:c.Offset+c.Size]) {
			t.Errorf("chunk at inner offset %d: %v", c.InnerOffset, errs[i])
		}
	}
}

// TestReadAtChunkBoundary guards covering's search: a read that starts
// where a chunk starts fetches that chunk, not the one ending there.
func TestReadAtChunkBoundary(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(3000, 28)}}, estargz.WithChunkSize(1000))
	file := l.files["f"]
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest, SequentialPrefetch: -1})
	p := make([]byte, 1000)
	if n, err := r.ReadAt(ctx, file, p, 1000); n != 1000 || err != nil || !bytes.Equal(p, l.data["f"][1000:2000]) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if got := fetchesOf(src, file); got[0] != 0 || got[1] != 1 || got[2] != 0 {
		t.Errorf("fetches per chunk %v, want only the second chunk's", got)
	}
}

// TestChunkAtBlobOffsetZero checks that a chunk at the very start of the
// blob is a chunk like any other (covering refuses only negative offsets).
func TestChunkAtBlobOffsetZero(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(3000, 29)}}, estargz.WithChunkSize(1000))
	file := append([]Chunk(nil), l.files["f"]...)
	shift := file[0].BlobOffset
	for i := range file {
		file[i].BlobOffset -= shift
	}
	r := NewReader(&memSource{blob: l.blob[shift:]}, Options{LayerDigest: testLayerDigest})
	p := make([]byte, 3000)
	if n, err := r.ReadAt(ctx, file, p, 0); n != 3000 || err != nil || !bytes.Equal(p, l.data["f"]) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
}

// gzipped returns data as one gzip stream.
func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestStreamShorterThanChunk guards the exact-size decode where the digest
// alone would let a chunk through: a chunk whose last bytes are zeros,
// stored in a stream that ends before them (or before the chunk starts),
// would decode to its own digest (what the stream lacks stays zero), but
// the stream does not hold the chunk the TOC describes, and it is refused.
func TestStreamShorterThanChunk(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	want := append([]byte("lazy chunk"), make([]byte, 6)...)
	for _, tc := range []struct {
		name   string
		stream []byte
		inner  int64
		chunk  []byte
	}{
		{"stream ends inside the chunk", want[:10], 0, want},
		{"stream ends where the chunk starts", want[:10], 10, want[10:]},
		{"stream ends before the chunk starts", want[:10], 12, want[10:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := gzipped(t, tc.stream)
			file := []Chunk{{Size: int64(len(tc.chunk)), BlobSize: int64(len(blob)), InnerOffset: tc.inner, Digest: digest.FromBytes(tc.chunk)}}
			r := NewReader(&memSource{blob: blob}, Options{LayerDigest: testLayerDigest})
			p := bytes.Repeat([]byte{0xAA}, len(tc.chunk))
			n, err := r.ReadAt(ctx, file, p, 0)
			failedRead(t, n, err, p, ErrVerification)
		})
	}
}

// TestNotAGzipStream guards the check of a stream's gzip header, also
// for a reader taken from the pool (reset onto the new stream): the
// refusal says the stream is not gzip, which tells an operator the TOC
// points at the wrong bytes rather than at damaged ones.
func TestNotAGzipStream(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	good := []byte("a good chunk")
	blob := gzipped(t, good)
	bad := bytes.Repeat([]byte("not gzip "), 4)
	goodFile := []Chunk{{Size: int64(len(good)), BlobSize: int64(len(blob)), Digest: digest.FromBytes(good)}}
	badFile := []Chunk{{Size: 5, BlobOffset: int64(len(blob)), BlobSize: int64(len(bad)), Digest: digest.FromString("not gzip")}}
	r := NewReader(&memSource{blob: append(blob, bad...)}, Options{LayerDigest: testLayerDigest, SequentialPrefetch: -1, ReadAhead: -1})
	for i := range 2 {
		// The first bad read gets a new reader, the second (after a good
		// read put one back) most likely the pooled one.
		if i > 0 {
			if _, err := r.ReadAt(ctx, goodFile, make([]byte, len(good)), 0); err != nil {
				t.Fatal(err)
			}
		}
		p := bytes.Repeat([]byte{0xAA}, 5)
		n, err := r.ReadAt(ctx, badFile, p, 0)
		failedRead(t, n, err, p, ErrVerification)
		if !strings.Contains(err.Error(), "not a gzip stream") {
			t.Errorf("read %d: err = %v, want it to say the stream is not gzip", i, err)
		}
	}
}

// TestEmptyReads guards ReadAt's bounds for reads of no bytes: a negative
// offset is refused even then, and an empty read inside the file asks the
// source for nothing.
func TestEmptyReads(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	l := buildLayer(t, []testFile{{"f", fileData(3000, 30)}}, estargz.WithChunkSize(1000))
	src := &memSource{blob: l.blob}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	if n, err := r.ReadAt(ctx, l.files["f"], nil, -1); n != 0 || !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty read at -1 = %d, %v; want 0, invalid argument", n, err)
	}
	if n, err := r.ReadAt(ctx, l.files["f"], []byte{}, 1500); n != 0 || err != nil {
		t.Errorf("empty read at 1500 = %d, %v; want 0, nil", n, err)
	}
	if n := len(src.spans()); n != 0 {
		t.Errorf("%d source calls for empty reads", n)
	}
}
