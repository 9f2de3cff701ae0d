package remote

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
)

// TestBlobTailOneRequest: the tail and the size come with one suffix range
// GET, no HEAD; a blob shorter than the tail comes whole.
func TestBlobTailOneRequest(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	for _, size := range []int{1000, 100, 64} {
		blob := testBlob(size)
		dgst := reg.addBlob(blob)
		reg.set(func(f *fakeRegistry) { f.requests = nil })
		b, tail, err := NewResolver(quick(Options{})).BlobTail(ctx, reg.ref(), dgst, 64)
		if err != nil {
			t.Fatal(err)
		}
		want := blob[max(0, size-64):]
		if b.Size() != int64(size) || !bytes.Equal(tail, want) {
			t.Errorf("blob of %d bytes: size %d, tail of %d bytes (equal: %v); want %d bytes", size, b.Size(), len(tail), bytes.Equal(tail, want), len(want))
		}
		if heads, gets := len(reg.blobRequests(http.MethodHead)), reg.blobRequests(http.MethodGet); heads != 0 || len(gets) != 1 || gets[0].Header.Get("Range") != "bytes=-64" {
			t.Errorf("blob of %d bytes: %d HEAD and %d GET requests, want one GET of bytes=-64", size, heads, len(gets))
		}
	}
}

// TestBlobTailFallsBack: a host that refuses suffix ranges (416) or
// answers one with the whole blob (200) is asked the size and then a
// bounded range; the answer is the same.
func TestBlobTailFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(f *fakeRegistry)
	}{
		{"416", func(f *fakeRegistry) { f.noSuffix = true }},
		{"200 with the whole blob", func(f *fakeRegistry) { f.suffixWhole = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			reg := newFakeRegistry(t, "library/test")
			blob := testBlob(1000)
			dgst := reg.addBlob(blob)
			reg.set(tc.set)
			b, tail, err := NewResolver(quick(Options{})).BlobTail(ctx, reg.ref(), dgst, 64)
			if err != nil {
				t.Fatal(err)
			}
			if b.Size() != 1000 || !bytes.Equal(tail, blob[1000-64:]) {
				t.Errorf("size %d, tail of %d bytes; want 1000 and the last 64", b.Size(), len(tail))
			}
			gets := reg.blobRequests(http.MethodGet)
			if len(gets) != 2 || gets[1].Header.Get("Range") != "bytes=936-999" {
				t.Errorf("GETs after a refused suffix: %d, want the suffix and bytes=936-999", len(gets))
			}
		})
	}
}

// TestBlobTailBound pins BlobTail's bound on n at its edge.
func TestBlobTailBound(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	dgst := reg.addBlob(testBlob(100))
	r := NewResolver(quick(Options{}))
	for _, n := range []int{0, -1, MaxTailBytes + 1} {
		if _, _, err := r.BlobTail(ctx, reg.ref(), dgst, n); !errdefs.IsInvalidArgument(err) {
			t.Errorf("BlobTail(n=%d) = %v, want invalid argument", n, err)
		}
	}
	if _, _, err := r.BlobTail(ctx, reg.ref(), dgst, MaxTailBytes); err != nil {
		t.Errorf("BlobTail(n=MaxTailBytes) = %v", err)
	}
}

// TestSuffixContentRangeMustMatch guards the checks of a suffix range's
// answer: only the blob's last min(n, size) bytes with a complete length
// pass, with or without a Content-Length; anything else is a transient
// failure (and the footer is never read from it), and the give-up error
// names what was wrong.
func TestSuffixContentRangeMustMatch(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	var mu sync.Mutex
	var cr string
	var body []byte
	var chunked bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK)
			return
		}
		mu.Lock()
		cr, body, chunked := cr, body, chunked
		mu.Unlock()
		w.Header().Set("Content-Range", cr)
		if !chunked {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		w.WriteHeader(http.StatusPartialContent)
		if chunked {
			w.(http.Flusher).Flush()
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/library/test:latest"
	const n = 10
	longer := append(bytes.Clone(blob[990:]), 'x')
	for _, tc := range []struct {
		name    string
		cr      string
		body    []byte
		chunked bool
		why     string // the give-up's last status; "": the tail
	}{
		{name: "exact", cr: "bytes 990-999/1000", body: blob[990:]},
		{name: "exact, chunked", cr: "bytes 990-999/1000", body: blob[990:], chunked: true},
		{name: "unknown complete length", cr: "bytes 990-999/*", body: blob[990:], why: "bad Content-Range"},
		{name: "first byte one late", cr: "bytes 991-999/1000", body: blob[991:], why: "wrong Content-Range"},
		{name: "first byte one early", cr: "bytes 989-999/1000", body: blob[989:], why: "wrong Content-Range"},
		{name: "last byte one early", cr: "bytes 989-998/1000", body: blob[989:999], why: "wrong Content-Range"},
		{name: "last byte one early, body of the tail's length", cr: "bytes 990-998/1000", body: blob[990:], why: "wrong Content-Range"},
		{name: "a longer blob's tail", cr: "bytes 990-999/1001", body: blob[990:], why: "wrong Content-Range"},
		{name: "empty body", cr: "bytes 990-999/1000", body: nil, why: "body length differs from range"},
		{name: "body one byte short", cr: "bytes 990-999/1000", body: blob[991:], why: "body length differs from range"},
		{name: "body one byte long", cr: "bytes 990-999/1000", body: longer, why: "body length differs from range"},
		{name: "body one byte short, chunked", cr: "bytes 990-999/1000", body: blob[991:], chunked: true, why: "truncated body"},
		{name: "body one byte long, chunked", cr: "bytes 990-999/1000", body: longer, chunked: true, why: "body longer than range"},
		{name: "unparsable", cr: "bytes 990-999", body: blob[990:], why: "bad Content-Range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			cr, body, chunked = tc.cr, tc.body, tc.chunked
			mu.Unlock()
			b, tail, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).BlobTail(ctx, ref, digest.FromBytes(blob), n)
			if tc.why == "" {
				if err != nil || b.Size() != 1000 || !bytes.Equal(tail, blob[990:]) {
					t.Fatalf("BlobTail = %v, %d bytes, %v; want the tail", b, len(tail), err)
				}
				return
			}
			if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), fmt.Sprintf("last status %q", tc.why)) {
				t.Fatalf("BlobTail answered with %q = %v; want unavailable, last status %q", tc.cr, err, tc.why)
			}
		})
	}
}

// TestBlobOfSizeMakesNoRequest: a kept TOC's size is used as is, and must
// be one.
func TestBlobOfSizeMakesNoRequest(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	blob := testBlob(1000)
	dgst := reg.addBlob(blob)
	r := NewResolver(quick(Options{}))
	for _, size := range []int64{0, -1} {
		if _, err := r.BlobOfSize(reg.ref(), dgst, size); !errdefs.IsInvalidArgument(err) {
			t.Errorf("BlobOfSize(size=%d) = %v, want invalid argument", size, err)
		}
	}
	b, err := r.BlobOfSize(reg.ref(), dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(reg.blobRequests(http.MethodHead)) + len(reg.blobRequests(http.MethodGet)); n != 0 {
		t.Errorf("%d requests before the first read, want none", n)
	}
	p := make([]byte, 10)
	if _, err := b.ReadAt(ctx, p, 990); err != nil || !bytes.Equal(p, blob[990:]) {
		t.Errorf("ReadAt = %v", err)
	}
}
