package remote

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
)

// TestBlobStream reads a blob of a little more than two chunks from start to
// end: every byte arrives in order, in one range request per chunk.
func TestBlobStream(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	data := testBlob(2*StreamChunk + 123)
	d := reg.addBlob(data)
	b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b.Stream(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("streamed %d bytes that differ from the blob's %d", len(got), len(data))
	}
	if n := len(reg.blobRequests(http.MethodGet)); n != 3 {
		t.Errorf("%d GET requests for a blob of 3 chunks, want 3", n)
	}
}

// TestBlobStreamFailure guards the stream's error check: a read the
// registry refuses ends the stream with that error (a caller hashing the
// blob must not take a short stream for the whole), and the error stays.
func TestBlobStreamFailure(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	data := testBlob(1000)
	d := reg.addBlob(data)
	b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	reg.set(func(f *fakeRegistry) { f.status = http.StatusNotFound })
	s := b.Stream(ctx)
	for i := range 2 {
		if n, err := s.Read(make([]byte, 100)); n != 0 || !errdefs.IsNotFound(err) {
			t.Fatalf("read %d of a stream whose blob is gone = %d, %v; want 0 and not found", i, n, err)
		}
	}
}
