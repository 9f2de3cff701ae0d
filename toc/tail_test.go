package toc_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/toc"
)

// TestFetchWithTail: a tail that holds the footer and the TOC answers the
// whole Fetch (no request); a tail that holds part of the TOC leaves one
// request for exactly the bytes before it; the layer is the same.
func TestFetchWithTail(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	body, _ := splitBlob(t, blob)
	tocLen := len(blob) - len(body) // compressed TOC + footer
	want, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		tail         int
		requests     int
		fetchedBytes int64
	}{
		{name: "tail holds footer and TOC exactly", tail: tocLen, requests: 0},
		{name: "tail holds some of the body too", tail: tocLen + 100, requests: 0},
		{name: "tail lacks the TOC's first byte", tail: tocLen - 1, requests: 1, fetchedBytes: 1},
		{name: "tail holds the footer only", tail: estargz.FooterSize, requests: 1, fetchedBytes: int64(tocLen - estargz.FooterSize)},
		{name: "tail is the whole blob", tail: len(blob), requests: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(blob)
			got, err := toc.Fetch(testCtx(t), toc.WithTail(src, blob[len(blob)-tc.tail:]), blobDigest(blob), tocDigest, toc.DefaultLimits())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if requests, n := src.stats(); requests != tc.requests || n != tc.fetchedBytes {
				t.Errorf("source read %d bytes in %d requests, want %d in %d", n, requests, tc.fetchedBytes, tc.requests)
			}
			if got.TOCOffset != want.TOCOffset || got.BlobSize != want.BlobSize || !bytes.Equal(got.TOCCompressed, want.TOCCompressed) ||
				len(got.TOC.Entries) != len(want.TOC.Entries) {
				t.Errorf("layer through the tail differs: offset %d size %d entries %d, want %d %d %d",
					got.TOCOffset, got.BlobSize, len(got.TOC.Entries), want.TOCOffset, want.BlobSize, len(want.TOC.Entries))
			}
		})
	}
}

// TestTailReads pins the tail's edge: a read that starts at the tail's
// first byte costs no request, one that starts a byte before asks the
// source for that byte only, and the bytes are the blob's either way.
func TestTailReads(t *testing.T) {
	blob := []byte("0123456789abcdefghij")
	const tailLen = 8
	start := int64(len(blob) - tailLen)
	for _, tc := range []struct {
		name              string
		off, n            int64
		requests, fetched int64
		eof               bool
	}{
		{name: "at the tail's start", off: start, n: 4},
		{name: "one byte before the tail", off: start - 1, n: 4, requests: 1, fetched: 1},
		{name: "wholly before the tail", off: 0, n: 5, requests: 1, fetched: 5},
		{name: "ends at the tail's start", off: start - 3, n: 3, requests: 1, fetched: 3},
		{name: "past the end", off: start + 4, n: 8, eof: true},
		{name: "at the end", off: int64(len(blob)), n: 4, eof: true},
		{name: "the whole blob", off: 0, n: int64(len(blob)), requests: 1, fetched: start},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(blob)
			p := make([]byte, tc.n)
			got, err := toc.WithTail(src, blob[start:]).ReadAt(testCtx(t), p, tc.off)
			wantN := min(tc.n, int64(len(blob))-tc.off)
			// A read reaching past the end says io.EOF, like io.ReaderAt.
			wrongErr := (tc.eof && !errors.Is(err, io.EOF)) || (!tc.eof && err != nil)
			if int64(got) != wantN || wrongErr || !bytes.Equal(p[:got], blob[tc.off:tc.off+wantN]) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d %q, %v; want %d %q", tc.n, tc.off, got, p[:got], err, wantN, blob[tc.off:tc.off+wantN])
			}
			if requests, n := src.stats(); int64(requests) != tc.requests || n != tc.fetched {
				t.Errorf("source read %d bytes in %d requests, want %d in %d", n, requests, tc.fetched, tc.requests)
			}
		})
	}
}

// TestTailLongerThanBlobRefused: bytes that cannot be the blob's tail are
// never served as its footer.
func TestTailLongerThanBlobRefused(t *testing.T) {
	blob := []byte("0123456789")
	src := newSource(blob)
	for _, tail := range [][]byte{append([]byte("x"), blob...)} {
		if _, err := toc.WithTail(src, tail).ReadAt(testCtx(t), make([]byte, 4), 6); err == nil {
			t.Errorf("a %d-byte tail of a %d-byte blob was read from", len(tail), len(blob))
		}
	}
	// The tail as long as the blob is the blob.
	p := make([]byte, 4)
	if n, err := toc.WithTail(src, blob).ReadAt(testCtx(t), p, 6); n != 4 || err != nil || string(p) != "6789" {
		t.Errorf("whole-blob tail: %d %q %v", n, p, err)
	}
}

// TestRegion: the region is the blob from the TOC's offset on, read with
// one request through a tail that lacks part of it; a compressed TOC over
// the limit is refused before it is read, at the limit it is read.
func TestRegion(t *testing.T) {
	blob, _ := baseBlob(t)
	body, _ := splitBlob(t, blob)
	compressed := int64(len(blob) - len(body) - estargz.FooterSize)
	src := newSource(blob)
	region, err := toc.Region(testCtx(t), toc.WithTail(src, blob[len(blob)-estargz.FooterSize:]), toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(region, blob[len(body):]) {
		t.Errorf("region of %d bytes, want the %d from the TOC's offset", len(region), len(blob)-len(body))
	}
	if requests, n := src.stats(); requests != 1 || n != compressed {
		t.Errorf("%d requests for %d bytes, want 1 for the %d bytes of compressed TOC", requests, n, compressed)
	}
	lim := toc.DefaultLimits()
	lim.MaxCompressedSize = compressed
	if _, err := toc.Region(testCtx(t), newSource(blob), lim); err != nil {
		t.Errorf("TOC at the limit: %v", err)
	}
	lim.MaxCompressedSize = compressed - 1
	src = newSource(blob)
	var refused *toc.RefusedError
	if _, err := toc.Region(testCtx(t), src, lim); !errors.As(err, &refused) || refused.Reason != toc.ReasonTOCTooLarge {
		t.Errorf("TOC one byte over the limit: %v, want refused as too large", err)
	}
	if requests, _ := src.stats(); requests != 1 {
		t.Errorf("%d requests for a TOC over the limit, want the footer's only", requests)
	}
}
