package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lazyfs/lazyfs/metrics"
)

// The tests in this file guard the checks that keep a registry's wrong
// answer from passing for the blob's bytes: each part of Content-Range is
// compared on its own, and a size is only taken from a complete length.

// rangeRegistry answers HEAD with the blob's length (unless noHead) and a
// range GET with 206, the Content-Range that answer returns and the body
// it returns.
type rangeRegistry struct {
	srv  *httptest.Server
	blob []byte

	mu     sync.Mutex
	noHead bool
	// chunked sends range answers without Content-Length, headNoLength
	// HEAD answers.
	chunked, headNoLength bool
	answer                func(first, last int64) (contentRange string, body []byte)
}

func newRangeRegistry(t *testing.T, blob []byte) *rangeRegistry {
	r := &rangeRegistry{blob: blob}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rangeRegistry) set(f func(r *rangeRegistry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *rangeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !strings.Contains(req.URL.Path, "/blobs/") {
		w.WriteHeader(http.StatusOK)
		return
	}
	if req.Method == http.MethodHead {
		if r.noHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if r.noHeadLength() {
			w.Header().Set("Transfer-Encoding", "chunked")
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(r.blob)))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	var first, last int64
	if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	cr, body := fmt.Sprintf("bytes %d-%d/%d", first, last, len(r.blob)), r.blob[first:last+1]
	if r.answer != nil {
		cr, body = r.answer(first, last)
	}
	w.Header().Set("Content-Range", cr)
	if r.chunked {
		// Flushed before the body: net/http cannot know its length.
		w.WriteHeader(http.StatusPartialContent)
		w.(http.Flusher).Flush()
		w.Write(body)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(body)
}

// noHeadLength is headNoLength; serve holds the lock.
func (r *rangeRegistry) noHeadLength() bool { return r.headNoLength }

func (r *rangeRegistry) ref() string {
	return strings.TrimPrefix(r.srv.URL, "http://") + "/library/test:latest"
}

func TestContentRangeMustMatch(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	reg := newRangeRegistry(t, blob)
	b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), digest.FromBytes(blob))
	if err != nil {
		t.Fatal(err)
	}
	const off, n = 10, 10
	for _, tc := range []struct {
		name string
		cr   string
		body []byte
		ok   bool
	}{
		{name: "exact", cr: "bytes 10-19/1000", body: blob[10:20], ok: true},
		{name: "unknown complete length", cr: "bytes 10-19/*", body: blob[10:20], ok: true},
		{name: "first byte one late", cr: "bytes 11-19/1000", body: blob[11:20]},
		{name: "first byte one early", cr: "bytes 9-19/1000", body: blob[9:20]},
		{name: "last byte one late", cr: "bytes 10-20/1000", body: blob[10:21]},
		{name: "last byte one early", cr: "bytes 10-18/1000", body: blob[10:19]},
		// Ten bytes, as asked, under a header that says otherwise: only
		// the range's own check can tell.
		{name: "ten bytes, first byte one late", cr: "bytes 11-19/1000", body: blob[11:21]},
		{name: "ten bytes, last byte one late", cr: "bytes 10-20/1000", body: blob[10:20]},
		{name: "another blob's length", cr: "bytes 10-19/1001", body: blob[10:20]},
		{name: "a shorter blob's length", cr: "bytes 10-19/999", body: blob[10:20]},
		{name: "unparsable", cr: "bytes 10-19", body: blob[10:20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.set(func(r *rangeRegistry) {
				r.answer = func(int64, int64) (string, []byte) { return tc.cr, tc.body }
			})
			p := make([]byte, n)
			got, err := b.ReadAt(ctx, p, off)
			if tc.ok {
				if err != nil || got != n || !bytes.Equal(p, blob[off:off+n]) {
					t.Fatalf("ReadAt = %d, %v; want the bytes", got, err)
				}
				return
			}
			if got != 0 || !errdefs.IsUnavailable(err) {
				t.Fatalf("ReadAt answered with %q = %d, %v; want 0, unavailable", tc.cr, got, err)
			}
		})
	}
}

// TestRangeBodyMustBeTheRange guards the body's length checks of a range
// answer, with and without a Content-Length: a body of exactly the range
// is the range, any other length is not, and the error an operator reads
// names the range asked for and what was wrong with the answer.
func TestRangeBodyMustBeTheRange(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	reg := newRangeRegistry(t, blob)
	b, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).Blob(ctx, reg.ref(), digest.FromBytes(blob))
	if err != nil {
		t.Fatal(err)
	}
	const off, n = 10, 10
	for _, tc := range []struct {
		name    string
		chunked bool
		body    []byte
		why     string // "": the bytes are accepted
	}{
		{name: "exact, with Content-Length", body: blob[10:20]},
		{name: "exact, chunked", chunked: true, body: blob[10:20]},
		{name: "empty, with Content-Length", body: nil, why: "body length differs from range"},
		{name: "one byte long, with Content-Length", body: blob[10:21], why: "body length differs from range"},
		{name: "one byte long, chunked", chunked: true, body: blob[10:21], why: "body longer than range"},
		{name: "one byte short, chunked", chunked: true, body: blob[10:19], why: "truncated body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.set(func(r *rangeRegistry) {
				r.chunked = tc.chunked
				r.answer = func(int64, int64) (string, []byte) { return "bytes 10-19/1000", tc.body }
			})
			p := make([]byte, n)
			got, err := b.ReadAt(ctx, p, off)
			if tc.why == "" {
				if err != nil || got != n || !bytes.Equal(p, blob[off:off+n]) {
					t.Fatalf("ReadAt = %d, %v; want the bytes", got, err)
				}
				return
			}
			if got != 0 || !errdefs.IsUnavailable(err) {
				t.Fatalf("ReadAt = %d, %v; want 0, unavailable", got, err)
			}
			for _, want := range []string{"GET range bytes=10-19 failed", fmt.Sprintf("last status %q", tc.why)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestSizeNeedsCompleteLength guards the size taken from a one-byte range
// when HEAD is refused: only a complete length that the range fits in is a
// size.
func TestSizeNeedsCompleteLength(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	reg := newRangeRegistry(t, blob)
	for _, tc := range []struct {
		cr   string
		size int64 // 0: refused
	}{
		{"bytes 0-0/1000", 1000},
		{"bytes 0-0/1", 1},
		{"bytes 0-0/*", 0},
		{"bytes 0-0/0", 0},
		{"bytes 0-0", 0},
	} {
		reg.set(func(r *rangeRegistry) {
			r.noHead = true
			r.answer = func(int64, int64) (string, []byte) { return tc.cr, blob[:1] }
		})
		b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), digest.FromBytes(blob))
		if tc.size != 0 {
			if err != nil || b.Size() != tc.size {
				t.Errorf("size from %q: %v, %v; want %d", tc.cr, b, err, tc.size)
			}
			continue
		}
		if !errdefs.IsUnavailable(err) {
			t.Errorf("size from %q: err = %v, want unavailable", tc.cr, err)
		}
	}
}

// TestClassifyStatus pins the class of each registry status that callers
// branch on: only what may pass (timeouts, rate limits, server errors)
// is unavailable, and so retried or tried on the next host.
func TestClassifyStatus(t *testing.T) {
	for code, is := range map[int]func(error) bool{
		http.StatusNotFound:            errdefs.IsNotFound,
		http.StatusUnauthorized:        errdefs.IsUnauthorized,
		http.StatusForbidden:           errdefs.IsPermissionDenied,
		http.StatusRequestTimeout:      errdefs.IsUnavailable,
		http.StatusTooManyRequests:     errdefs.IsUnavailable,
		http.StatusInternalServerError: errdefs.IsUnavailable,
		http.StatusBadGateway:          errdefs.IsUnavailable,
		599:                            errdefs.IsUnavailable,
		http.StatusBadRequest:          errdefs.IsInvalidArgument,
		http.StatusConflict:            errdefs.IsConflict,
	} {
		if err := classifyStatus(code); !is(err) {
			t.Errorf("classifyStatus(%d) = %v, wrong class", code, err)
		}
	}
	if err := classifyStatus(499); errdefs.IsUnavailable(err) {
		t.Errorf("classifyStatus(499) = %v, a client error is not unavailable", err)
	}
}

// TestUnauthorizedIsAnsweredOnce guards the bound on authentication
// retries: a registry that keeps answering 401 to accepted credentials
// gets the challenge answered once, then the request fails as
// unauthenticated instead of looping.
func TestUnauthorizedIsAnsweredOnce(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	var mu sync.Mutex
	blobRequests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			mu.Lock()
			blobRequests++
			mu.Unlock()
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	r := NewResolver(quick(Options{Credentials: func(string) (string, string, error) { return "alice", "secret", nil }}))
	ref := strings.TrimPrefix(srv.URL, "http://") + "/library/test:latest"
	done := make(chan error, 1)
	go func() {
		_, err := r.Blob(ctx, ref, digest.FromString("blob"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errdefs.IsUnauthorized(err) {
			t.Fatalf("Blob = %v, want unauthenticated", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Blob still retrying a registry that always answers 401")
	}
	mu.Lock()
	defer mu.Unlock()
	// HEAD, then HEAD with credentials; the GET of one byte likewise if
	// the size request falls back to it; all once more with a fresh
	// authorizer (credentials may have been renewed), not more.
	if blobRequests == 0 || blobRequests > 8 {
		t.Errorf("%d blob requests, want each request answered once", blobRequests)
	}
}

// TestRequestMetrics guards what the registry series say of one request:
// a success counts as "ok" with its bytes and no failure, a failure
// counts under its reason and adds no bytes (lazyfs_registry_requests_total,
// lazyfs_registry_bytes_total, lazyfs_registry_request_failures_total).
func TestRequestMetrics(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	reg := newRangeRegistry(t, blob)
	host := strings.TrimPrefix(reg.srv.URL, "http://")
	b, err := NewResolver(quick(Options{ReadTimeout: 100 * time.Millisecond})).Blob(ctx, reg.ref(), digest.FromBytes(blob))
	if err != nil {
		t.Fatal(err)
	}
	type counts struct{ ok, rangeFailed, bytes, failures float64 }
	now := func() counts {
		return counts{
			ok:          testutil.ToFloat64(metrics.RegistryRequests.WithLabelValues(host, "ok")),
			rangeFailed: testutil.ToFloat64(metrics.RegistryRequests.WithLabelValues(host, reasonRange)),
			bytes:       testutil.ToFloat64(metrics.RegistryBytes.WithLabelValues(host)),
			failures:    testutil.ToFloat64(metrics.RegistryRequestFailures.WithLabelValues(reasonRange)),
		}
	}

	before := now()
	if _, err := b.ReadAt(ctx, make([]byte, 10), 10); err != nil {
		t.Fatal(err)
	}
	if got := now(); got.ok != before.ok+1 || got.bytes != before.bytes+10 || got.rangeFailed != before.rangeFailed || got.failures != before.failures {
		t.Errorf("after a read of 10 bytes: %+v, before %+v; want one ok request of 10 bytes and no failure", got, before)
	}

	reg.set(func(r *rangeRegistry) {
		r.answer = func(int64, int64) (string, []byte) { return "bytes 11-20/1000", blob[11:21] }
	})
	before = now()
	if _, err := b.ReadAt(ctx, make([]byte, 10), 10); err == nil {
		t.Fatal("a wrong Content-Range was accepted")
	}
	got := now()
	if got.ok != before.ok || got.bytes != before.bytes || got.rangeFailed < before.rangeFailed+1 || got.failures-before.failures != got.rangeFailed-before.rangeFailed {
		t.Errorf("after reads answered with the wrong range: %+v, before %+v; want range failures only, counted in both series, no bytes", got, before)
	}
}

// TestStatusReason pins the reason label of each status class, at the
// edges: what lazyfs_registry_request_failures_total{reason} tells an
// operator (a rate limit, the registry failing, or a request it refused).
func TestStatusReason(t *testing.T) {
	for code, want := range map[int]string{
		http.StatusTooManyRequests:              reason429,
		http.StatusRequestTimeout:               reason5xx,
		http.StatusInternalServerError:          reason5xx,
		599:                                     reason5xx,
		499:                                     reason4xx,
		http.StatusNotFound:                     reason4xx,
		http.StatusRequestedRangeNotSatisfiable: reason4xx,
	} {
		if got := statusReason(code); got != want {
			t.Errorf("statusReason(%d) = %q, want %q", code, got, want)
		}
	}
}

// TestBlobURLNamesTheRegistryToMirrorsOnly guards the "ns" parameter: a
// mirror learns from it which registry it stands in for; the registry
// itself (Docker Hub under its API host too) is asked without it.
func TestBlobURLNamesTheRegistryToMirrorsOnly(t *testing.T) {
	dgst := digest.FromString("blob")
	for _, tc := range []struct {
		registry, host, want string
	}{
		{"docker.io", "registry-1.docker.io", "https://registry-1.docker.io/v2/library/x/blobs/" + dgst.String()},
		{"docker.io", "mirror.local", "https://mirror.local/v2/library/x/blobs/" + dgst.String() + "?ns=docker.io"},
		{"ghcr.io", "ghcr.io", "https://ghcr.io/v2/library/x/blobs/" + dgst.String()},
		{"ghcr.io", "registry-1.docker.io", "https://registry-1.docker.io/v2/library/x/blobs/" + dgst.String() + "?ns=ghcr.io"},
	} {
		b := &Blob{registry: tc.registry, repo: "library/x", dgst: dgst}
		if got := b.blobURL(docker.RegistryHost{Scheme: "https", Host: tc.host, Path: "/v2"}); got != tc.want {
			t.Errorf("registry %s on host %s: %s, want %s", tc.registry, tc.host, got, tc.want)
		}
	}
}

// TestEmptyBlobSizeFromHead guards headSize's Content-Length check at its
// edge: a HEAD answering "Content-Length: 0" gives the size of an empty
// blob, with no range request (which an empty blob cannot answer).
func TestEmptyBlobSizeFromHead(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newRangeRegistry(t, nil)
	reg.set(func(r *rangeRegistry) {
		r.answer = func(int64, int64) (string, []byte) {
			t.Error("range request for the size of an empty blob")
			return "bytes */0", nil
		}
	})
	b, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).Blob(ctx, reg.ref(), digest.FromBytes(nil))
	if err != nil || b.Size() != 0 {
		t.Fatalf("Blob = %v, %v; want an empty blob", b, err)
	}
}

// TestFailedRedirectForgotten guards viaRedirect's forgetting of a cached
// storage URL that failed (an expired signature): the next reads ask the
// registry, and the URL is not tried again, also when the registry no
// longer redirects.
func TestFailedRedirectForgotten(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	var mu sync.Mutex
	storageOK, redirecting, storageGETs, registryGETs := true, true, 0, 0
	serveRange := func(w http.ResponseWriter, r *http.Request) {
		var first, last int
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(blob)))
		w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(blob[first : last+1])
	}
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageGETs++
		ok := storageOK
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusForbidden) // the signature expired
			return
		}
		serveRange(w, r)
	}))
	t.Cleanup(storage.Close)
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			return
		}
		mu.Lock()
		redirect := redirecting
		registryGETs++
		mu.Unlock()
		if redirect {
			http.Redirect(w, r, storage.URL+"/signed", http.StatusTemporaryRedirect)
			return
		}
		serveRange(w, r)
	}))
	t.Cleanup(registry.Close)
	ref := strings.TrimPrefix(registry.URL, "http://") + "/library/x:latest"
	newBlob := func(ttl time.Duration) *Blob {
		t.Helper()
		b, err := NewResolver(quick(Options{MaxHedges: -1, RedirectTTL: ttl})).Blob(ctx, ref, digest.FromBytes(blob))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var b *Blob
	read := func() {
		t.Helper()
		p := make([]byte, 10)
		if _, err := b.ReadAt(ctx, p, 10); err != nil || !bytes.Equal(p, blob[10:20]) {
			t.Fatalf("ReadAt = %v", err)
		}
	}

	// An expired URL is not used: the registry is asked again.
	b = newBlob(time.Nanosecond)
	read()
	read()
	mu.Lock()
	if registryGETs != 2 || storageGETs != 2 {
		t.Errorf("with a redirect TTL of 1ns: %d GETs of the registry and %d of storage, want 2 and 2", registryGETs, storageGETs)
	}
	storageGETs = 0
	mu.Unlock()

	b = newBlob(time.Hour)
	read() // redirected, the storage URL remembered
	mu.Lock()
	storageOK, redirecting = false, false
	mu.Unlock()
	read() // the cached URL fails once: the registry serves
	read()
	read()
	mu.Lock()
	defer mu.Unlock()
	if storageGETs != 2 {
		t.Errorf("%d GETs of the storage URL, want 2: one that worked, one that failed, then none", storageGETs)
	}
}

// TestHostsStampSeesThePortSpelling guards hostsStamp's "_port_" name: a
// hosts.toml written under <host>_<port>_ (containerd's spelling for a
// registry with a port, e.g. on file systems without colons) changes the
// stamp, so that the hosts are configured again.
func TestHostsStampSeesThePortSpelling(t *testing.T) {
	dir := t.TempDir()
	const name = "registry.local:5000"
	port := filepath.Join(dir, "registry.local_5000_")
	if err := os.MkdirAll(port, 0o755); err != nil {
		t.Fatal(err)
	}
	before := hostsStamp(dir, name)
	if err := os.WriteFile(filepath.Join(port, "hosts.toml"), []byte("server = \"http://registry.local:5000\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if hostsStamp(dir, name) == before {
		t.Errorf("hosts.toml written under %s did not change the stamp of %s", port, name)
	}
}

// TestGiveUpNamesAttemptsAndStatus guards the give-up error's account of
// a read: a permanent failure (404) is tried once, not until the
// deadline, and says so; a request the read's deadline cut names what
// happened to it rather than no status at all.
func TestGiveUpNamesAttemptsAndStatus(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(100)
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	var mu sync.Mutex
	answer := http.StatusNotFound
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			return
		}
		mu.Lock()
		code := answer
		mu.Unlock()
		if code == 0 {
			select { // no answer until the read gives up
			case <-r.Context().Done():
			case <-stall:
			}
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	b, err := NewResolver(quick(Options{ReadTimeout: 200 * time.Millisecond, RequestTimeout: time.Minute, MaxHedges: -1})).Blob(ctx, strings.TrimPrefix(srv.URL, "http://")+"/library/x:latest", digest.FromBytes(blob))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.ReadAt(ctx, make([]byte, 10), 0)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "failed after 1 attempts") {
		t.Errorf("read of a blob the registry does not have: %v; want not found, after 1 attempt", err)
	}

	// One request, longer than the read may take: the deadline cuts it.
	mu.Lock()
	answer = 0
	mu.Unlock()
	_, err = b.ReadAt(ctx, make([]byte, 10), 0)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), `last status "timed out"`) {
		t.Errorf("read of a registry that never answers: %v; want unavailable, last status timed out", err)
	}
}

// TestCancelledReadSaysSo guards giveUp's class of a read its caller
// cancelled while it waited to retry: the error is context.Canceled (the
// caller gave up: no outage), whatever the last answer was.
func TestCancelledReadSaysSo(t *testing.T) {
	ctx, cancel := context.WithCancel(logtest.WithT(context.Background(), t))
	defer cancel()
	var mu sync.Mutex
	gets := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "100")
			return
		}
		mu.Lock()
		gets++
		if gets == 2 { // the retry at once failed too: the read now backs off
			cancel()
		}
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	o := quick(Options{ReadTimeout: time.Minute, MaxHedges: -1})
	o.BackoffMin, o.BackoffMax = time.Minute, time.Minute
	b, err := NewResolver(o).Blob(ctx, strings.TrimPrefix(srv.URL, "http://")+"/library/x:latest", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.ReadAt(ctx, make([]byte, 10), 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read cancelled while backing off after a 503: %v, want context.Canceled", err)
	}
}

// TestSizeWithoutContentLength guards headSize's check of a HEAD answer
// without Content-Length: the size is then asked with a one-byte range,
// never taken as -1.
func TestSizeWithoutContentLength(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testBlob(1000)
	reg := newRangeRegistry(t, blob)
	reg.set(func(r *rangeRegistry) { r.headNoLength = true })
	b, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).Blob(ctx, reg.ref(), digest.FromBytes(blob))
	if err != nil || b.Size() != 1000 {
		t.Fatalf("Blob = %v, %v; want the size of 1000 from a range", b, err)
	}
}

// TestRedirectKeptPerHost guards viaRedirect's host check: a storage URL
// one host (a mirror) redirected to is used for that host's reads only,
// never for another host of the registry, whose redirect may differ.
func TestRedirectKeptPerHost(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	var mu sync.Mutex
	hits := 0
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		w.WriteHeader(http.StatusPartialContent)
	}))
	t.Cleanup(storage.Close)
	b := &Blob{resolver: NewResolver(quick(Options{})), dgst: digest.FromString("x")}
	b.redirect.Store(&redirect{host: "mirror.local", url: storage.URL + "/signed", expires: time.Now().Add(time.Hour)})
	other := docker.RegistryHost{Host: "registry.local", Client: storage.Client()}
	if resp, ok := b.viaRedirect(ctx, other, http.Header{}); ok || resp != nil {
		t.Fatal("another host's read went to the mirror's storage URL")
	}
	mirror := docker.RegistryHost{Host: "mirror.local", Client: storage.Client()}
	resp, ok := b.viaRedirect(ctx, mirror, http.Header{})
	if !ok {
		t.Fatal("the mirror's own read did not use its storage URL")
	}
	closeBody(resp)
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 {
		t.Errorf("%d requests to the storage URL, want 1 (the mirror's)", hits)
	}
}
