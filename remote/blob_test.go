package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
)

func testBlob(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestBlobReadAt(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	data := testBlob(100_000)
	d := reg.addBlob(data)

	b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != int64(len(data)) {
		t.Fatalf("Size() = %d, want %d", b.Size(), len(data))
	}

	for _, tc := range []struct {
		name    string
		off     int64
		len     int
		wantN   int
		wantErr error
		wantRng string // "" when no request may be sent
	}{
		{name: "start", off: 0, len: 1, wantN: 1, wantRng: "bytes=0-0"},
		{name: "middle odd", off: 4097, len: 12345, wantN: 12345, wantRng: "bytes=4097-16441"},
		{name: "exactly to end", off: 99_000, len: 1000, wantN: 1000, wantRng: "bytes=99000-99999"},
		{name: "past end", off: 99_990, len: 100, wantN: 10, wantErr: io.EOF, wantRng: "bytes=99990-99999"},
		{name: "at end", off: 100_000, len: 10, wantN: 0, wantErr: io.EOF},
		{name: "beyond end", off: 200_000, len: 10, wantN: 0, wantErr: io.EOF},
		{name: "empty", off: 5, len: 0, wantN: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(reg.blobRequests(http.MethodGet))
			p := make([]byte, tc.len)
			n, err := b.ReadAt(ctx, p, tc.off)
			if n != tc.wantN || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tc.len, tc.off, n, err, tc.wantN, tc.wantErr)
			}
			if n > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
				t.Fatal("wrong bytes")
			}
			reqs := reg.blobRequests(http.MethodGet)[before:]
			if tc.wantRng == "" {
				if len(reqs) != 0 {
					t.Fatalf("sent %d requests, want none", len(reqs))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("sent %d requests, want exactly one", len(reqs))
			}
			if got := reqs[0].Header.Get("Range"); got != tc.wantRng {
				t.Errorf("Range = %q, want %q", got, tc.wantRng)
			}
			if got := reqs[0].Header.Get("User-Agent"); got != DefaultUserAgent {
				t.Errorf("User-Agent = %q, want %q", got, DefaultUserAgent)
			}
		})
	}

	if _, err := b.ReadAt(ctx, make([]byte, 1), -1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("negative offset: err = %v, want invalid argument", err)
	}
}

func TestBlobSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noHead   bool
		wantHead int
		wantGet  int
	}{
		{name: "HEAD", wantHead: 1},
		{name: "HEAD refused, one-byte GET", noHead: true, wantHead: 1, wantGet: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			reg := newFakeRegistry(t, "library/test")
			reg.noHead = tc.noHead
			data := testBlob(4321)
			b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), reg.addBlob(data))
			if err != nil {
				t.Fatal(err)
			}
			if b.Size() != int64(len(data)) {
				t.Errorf("Size() = %d, want %d", b.Size(), len(data))
			}
			heads, gets := reg.blobRequests(http.MethodHead), reg.blobRequests(http.MethodGet)
			if len(heads) != tc.wantHead || len(gets) != tc.wantGet {
				t.Errorf("sent %d HEAD and %d GET, want %d and %d", len(heads), len(gets), tc.wantHead, tc.wantGet)
			}
			if tc.wantGet > 0 && gets[0].Header.Get("Range") != "bytes=0-0" {
				t.Errorf("size GET has Range %q, want bytes=0-0", gets[0].Header.Get("Range"))
			}
		})
	}
}

func TestBlobErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		atOpen   bool // the fault shows in Blob, not in ReadAt
		fault    func(f *fakeRegistry)
		is       func(error) bool
		contains []string
	}{
		{name: "not found", atOpen: true, fault: func(f *fakeRegistry) { f.status = http.StatusNotFound },
			is: errdefs.IsNotFound, contains: []string{"404"}},
		{name: "forbidden", fault: func(f *fakeRegistry) { f.status = http.StatusForbidden },
			is: errdefs.IsPermissionDenied, contains: []string{"403"}},
		{name: "server error", fault: func(f *fakeRegistry) { f.status = http.StatusInternalServerError },
			is: errdefs.IsUnavailable, contains: []string{"500"}},
		{name: "unavailable", atOpen: true, fault: func(f *fakeRegistry) { f.status = http.StatusServiceUnavailable },
			is: errdefs.IsUnavailable, contains: []string{"503"}},
		{name: "rate limited", fault: func(f *fakeRegistry) { f.status = http.StatusTooManyRequests },
			is: errdefs.IsUnavailable, contains: []string{"429"}},
		{name: "range ignored", fault: func(f *fakeRegistry) { f.ignoreRange = true },
			is: errdefs.IsNotImplemented, contains: []string{"Range"}},
		{name: "range ignored at size", atOpen: true, fault: func(f *fakeRegistry) { f.ignoreRange, f.noHead = true, true },
			is: errdefs.IsNotImplemented, contains: []string{"Range"}},
		{name: "wrong content-range", fault: func(f *fakeRegistry) { f.badContentRange = true },
			is: errdefs.IsUnavailable, contains: []string{"bytes 11-20/"}},
		{name: "short body", fault: func(f *fakeRegistry) { f.shortBody = true },
			is: errdefs.IsUnavailable, contains: []string{"of 10 bytes"}},
		{name: "unreachable", fault: func(f *fakeRegistry) { f.srv.Close() },
			is: errdefs.IsUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			reg := newFakeRegistry(t, "library/test")
			d := reg.addBlob(testBlob(1000))
			host := reg.host()
			r := NewResolver(quick(Options{}))
			var b *Blob
			var err error
			if tc.atOpen {
				reg.set(tc.fault)
				_, err = r.Blob(ctx, reg.ref(), d)
			} else {
				if b, err = r.Blob(ctx, reg.ref(), d); err != nil {
					t.Fatal(err)
				}
				reg.set(tc.fault)
				var n int
				n, err = b.ReadAt(ctx, make([]byte, 10), 10)
				if n != 0 {
					t.Errorf("n = %d on error, want 0", n)
				}
			}
			if err == nil || !tc.is(err) {
				t.Fatalf("err = %v, want the right errdefs class", err)
			}
			for _, s := range append([]string{host, d.String()}, tc.contains...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
}

func TestBlobTimeout(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	d := reg.addBlob(testBlob(1000))
	b, err := NewResolver(quick(Options{RequestTimeout: 200 * time.Millisecond})).Blob(ctx, reg.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	reg.set(func(f *fakeRegistry) { f.stall = true })
	start := time.Now()
	_, err = b.ReadAt(ctx, make([]byte, 10), 0)
	if !errdefs.IsUnavailable(err) {
		t.Errorf("stalled host: err = %v, want unavailable", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("stalled host took %v to fail", el)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = b.ReadAt(cctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v, want context.Canceled", err)
	}
}

func TestBlobInvalidArguments(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	d := reg.addBlob(testBlob(10))
	for _, tc := range []struct {
		name string
		ref  string
		dgst digest.Digest
	}{
		{name: "short ref", ref: "busybox:latest", dgst: d},
		{name: "scheme in ref", ref: "http://" + reg.ref(), dgst: d},
		{name: "registry only", ref: reg.host(), dgst: d},
		{name: "bad digest", ref: reg.ref(), dgst: "sha256:1234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewResolver(quick(Options{})).Blob(ctx, tc.ref, tc.dgst)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Blob(%q, %q): err = %v, want invalid argument", tc.ref, tc.dgst, err)
			}
		})
	}
	if n := len(reg.blobRequests("")); n != 0 {
		t.Errorf("invalid arguments sent %d requests", n)
	}
}

func TestBlobDigestRef(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	data := testBlob(10)
	d := reg.addBlob(data)
	ref := fmt.Sprintf("%s/%s@%s", reg.host(), reg.repo, digest.FromString("manifest"))
	b, err := NewResolver(quick(Options{})).Blob(ctx, ref, d)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 10)
	if _, err := b.ReadAt(ctx, p, 0); err != nil || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt = %v, bytes equal %v", err, bytes.Equal(p, data))
	}
}
