package harness

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fakeBlobUpstream serves one blob (with Range support, as http.ServeContent
// does it: single and multi-range) and one manifest, and records what it
// saw.
type fakeBlobUpstream struct {
	blob     []byte
	dgst     digest.Digest
	lastHost atomic.Value // string
	gets     atomic.Int32
}

func newFakeBlobUpstream(t *testing.T) (*fakeBlobUpstream, string) {
	t.Helper()
	u := &fakeBlobUpstream{blob: testImageRandom(7, 100_000)}
	u.dgst = digest.FromBytes(u.blob)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.lastHost.Store(r.Host)
		w.Header().Set("X-Upstream", "fake")
		switch r.URL.Path {
		case "/v2/some/repo/blobs/" + u.dgst.String():
			if r.Method == http.MethodGet {
				u.gets.Add(1)
			}
			w.Header().Set("Docker-Content-Digest", u.dgst.String())
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(u.blob))
		case "/v2/some/repo/manifests/latest":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			io.WriteString(w, `{"schemaVersion":2}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return u, strings.TrimPrefix(srv.URL, "http://")
}

func startTestProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := StartProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func proxyGet(t *testing.T, p *Proxy, method, path, rangeHeader string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// flipped returns b with the bytes at the given indexes inverted.
func flipped(b []byte, at ...int) []byte {
	out := bytes.Clone(b)
	for _, i := range at {
		out[i] ^= 0xff
	}
	return out
}

func TestProxyCounts(t *testing.T) {
	u, upstream := newFakeBlobUpstream(t)
	p := startTestProxy(t, upstream)
	blobPath := "/v2/some/repo/blobs/" + u.dgst.String()
	n := int64(len(u.blob))

	for _, tc := range []struct {
		name         string
		method, path string
		rangeHeader  string
		wantStatus   int
		wantBody     []byte
		wantHeaders  map[string]string
		wantBytes    int64
		wantRequests int
		wantFull     int
	}{
		{
			name: "full GET", method: http.MethodGet, path: blobPath,
			wantStatus: http.StatusOK, wantBody: u.blob,
			wantHeaders: map[string]string{"Docker-Content-Digest": u.dgst.String(), "X-Upstream": "fake"},
			wantBytes:   n, wantRequests: 1, wantFull: 1,
		},
		{
			name: "ranged GET", method: http.MethodGet, path: blobPath, rangeHeader: "bytes=1000-1999",
			wantStatus: http.StatusPartialContent, wantBody: u.blob[1000:2000],
			wantHeaders: map[string]string{"Content-Range": "bytes 1000-1999/100000", "Content-Length": "1000"},
			wantBytes:   1000, wantRequests: 1,
		},
		{
			name: "open-ended range", method: http.MethodGet, path: blobPath, rangeHeader: "bytes=99990-",
			wantStatus: http.StatusPartialContent, wantBody: u.blob[99990:],
			wantHeaders: map[string]string{"Content-Range": "bytes 99990-99999/100000"},
			wantBytes:   10, wantRequests: 1,
		},
		{
			name: "HEAD passes through and is not a GET", method: http.MethodHead, path: blobPath,
			wantStatus: http.StatusOK, wantBody: []byte{},
			wantHeaders: map[string]string{"Content-Length": "100000", "Docker-Content-Digest": u.dgst.String()},
		},
		{
			name: "manifest passes through", method: http.MethodGet, path: "/v2/some/repo/manifests/latest",
			wantStatus: http.StatusOK, wantBody: []byte(`{"schemaVersion":2}`),
			wantHeaders: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
		},
		{
			name: "unsatisfiable range counts the request, not the error body", method: http.MethodGet,
			path: blobPath, rangeHeader: "bytes=200000-", wantStatus: http.StatusRequestedRangeNotSatisfiable,
			wantRequests: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Reset()
			resp, body := proxyGet(t, p, tc.method, tc.path, tc.rangeHeader)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body of %d bytes differs from the %d expected", len(body), len(tc.wantBody))
			}
			for k, v := range tc.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := p.BlobBytes(u.dgst); got != tc.wantBytes {
				t.Errorf("BlobBytes = %d, want %d", got, tc.wantBytes)
			}
			if got := p.TotalBlobBytes(); got != tc.wantBytes {
				t.Errorf("TotalBlobBytes = %d, want %d", got, tc.wantBytes)
			}
			if got := p.BlobRequests(u.dgst); got != tc.wantRequests {
				t.Errorf("BlobRequests = %d, want %d", got, tc.wantRequests)
			}
			if got := p.FullBlobFetches(u.dgst); got != tc.wantFull {
				t.Errorf("FullBlobFetches = %d, want %d", got, tc.wantFull)
			}
		})
	}

	t.Run("counters add up until Reset", func(t *testing.T) {
		p.Reset()
		proxyGet(t, p, http.MethodGet, blobPath, "")
		proxyGet(t, p, http.MethodGet, blobPath, "bytes=0-9")
		if p.BlobBytes(u.dgst) != n+10 || p.BlobRequests(u.dgst) != 2 || p.FullBlobFetches(u.dgst) != 1 {
			t.Errorf("bytes %d requests %d full %d", p.BlobBytes(u.dgst), p.BlobRequests(u.dgst), p.FullBlobFetches(u.dgst))
		}
		other := digest.FromString("other")
		if p.BlobBytes(other) != 0 || p.BlobRequests(other) != 0 {
			t.Error("counts for a blob never asked for")
		}
		p.Reset()
		if p.BlobBytes(u.dgst) != 0 || p.TotalBlobBytes() != 0 || p.BlobRequests(u.dgst) != 0 || p.FullBlobFetches(u.dgst) != 0 {
			t.Error("Reset left counts")
		}
	})

	t.Run("Host is kept", func(t *testing.T) {
		proxyGet(t, p, http.MethodGet, "/v2/some/repo/manifests/latest", "")
		if got := u.lastHost.Load(); got != p.Addr() {
			t.Errorf("upstream saw Host %q, want the proxy's %q", got, p.Addr())
		}
	})
}

func TestProxyCorrupt(t *testing.T) {
	u, upstream := newFakeBlobUpstream(t)
	p := startTestProxy(t, upstream)
	blobPath := "/v2/some/repo/blobs/" + u.dgst.String()
	p.Corrupt(u.dgst, 1500)
	p.Corrupt(u.dgst, 99_999)

	for _, tc := range []struct {
		name        string
		rangeHeader string
		want        []byte
	}{
		{"full GET", "", flipped(u.blob, 1500, 99_999)},
		{"range covering the offset", "bytes=1000-1999", flipped(u.blob[1000:2000], 500)},
		{"range starting at the offset", "bytes=1500-1500", flipped(u.blob[1500:1501], 0)},
		{"range ending at the offset", "bytes=99000-", flipped(u.blob[99_000:], 999)},
		{"range missing the offsets", "bytes=0-1499", u.blob[:1500]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body := proxyGet(t, p, http.MethodGet, blobPath, tc.rangeHeader)
			if !bytes.Equal(body, tc.want) {
				t.Errorf("body differs from the expected corruption (%d bytes)", len(body))
			}
		})
	}

	t.Run("multi-range", func(t *testing.T) {
		resp, body := proxyGet(t, p, http.MethodGet, blobPath, "bytes=0-9,1495-1504")
		parts := readMultipartRanges(t, resp, body)
		want := map[string][]byte{
			"bytes 0-9/100000":       u.blob[0:10],
			"bytes 1495-1504/100000": flipped(u.blob[1495:1505], 5),
		}
		if len(parts) != len(want) {
			t.Fatalf("%d parts, want %d", len(parts), len(want))
		}
		for cr, data := range want {
			if !bytes.Equal(parts[cr], data) {
				t.Errorf("part %s = %x, want %x", cr, parts[cr], data)
			}
		}
		if got := p.BlobBytes(u.dgst); got < int64(len(body)) {
			t.Errorf("multi-range body of %d bytes counted as %d", len(body), got)
		}
	})

	t.Run("cleared", func(t *testing.T) {
		p.ClearFaults()
		if _, body := proxyGet(t, p, http.MethodGet, blobPath, ""); !bytes.Equal(body, u.blob) {
			t.Error("still corrupted after ClearFaults")
		}
	})

	t.Run("once", func(t *testing.T) {
		p.CorruptOnce(u.dgst, 10)
		if _, body := proxyGet(t, p, http.MethodGet, blobPath, "bytes=0-99"); !bytes.Equal(body, flipped(u.blob[:100], 10)) {
			t.Error("first fetch not corrupted")
		}
		if _, body := proxyGet(t, p, http.MethodGet, blobPath, "bytes=0-99"); !bytes.Equal(body, u.blob[:100]) {
			t.Error("second fetch corrupted")
		}
	})
}

// readMultipartRanges returns the parts of a multipart/byteranges response
// by Content-Range, checking that Content-Length matched the body.
func readMultipartRanges(t *testing.T, resp *http.Response, body []byte) map[string][]byte {
	t.Helper()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(body)) {
		t.Fatalf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
	}
	mediaType, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	parts := map[string][]byte{}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		parts[part.Header.Get("Content-Range")] = data
	}
}

func TestProxyMultiRangeUncorrupted(t *testing.T) {
	u, upstream := newFakeBlobUpstream(t)
	p := startTestProxy(t, upstream)
	resp, body := proxyGet(t, p, http.MethodGet, "/v2/some/repo/blobs/"+u.dgst.String(), "bytes=0-9,50-59")
	parts := readMultipartRanges(t, resp, body)
	if !bytes.Equal(parts["bytes 0-9/100000"], u.blob[:10]) || !bytes.Equal(parts["bytes 50-59/100000"], u.blob[50:60]) {
		t.Errorf("parts %v", parts)
	}
	if got := p.BlobBytes(u.dgst); got != int64(len(body)) {
		t.Errorf("BlobBytes = %d, body was %d bytes", got, len(body))
	}
}

func TestProxyLatency(t *testing.T) {
	u, upstream := newFakeBlobUpstream(t)
	p := startTestProxy(t, upstream)
	const d = 150 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	proxyGet(t, p, http.MethodGet, "/v2/some/repo/blobs/"+u.dgst.String(), "bytes=0-0")
	if took := time.Since(start); took < d {
		t.Errorf("request took %v with a latency of %v", took, d)
	}
	p.SetLatency(0)
	start = time.Now()
	proxyGet(t, p, http.MethodGet, "/v2/some/repo/manifests/latest", "")
	if took := time.Since(start); took >= d {
		t.Errorf("request took %v without latency", took)
	}
}

func TestProxyClose(t *testing.T) {
	_, upstream := newFakeBlobUpstream(t)
	p, err := StartProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		t.Error("proxy still answers after Close")
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	upstream := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	p := startTestProxy(t, upstream)
	if resp, _ := proxyGet(t, p, http.MethodGet, "/v2/", ""); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
}

func TestBlobPathDigest(t *testing.T) {
	d := digest.FromString("x")
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/v2/repo/blobs/" + d.String(), true},
		{"/v2/some/nested/repo/blobs/" + d.String(), true},
		{"/v2/repo/blobs/uploads/", false},
		{"/v2/repo/blobs/uploads/" + d.String(), false},
		{"/v2/repo/manifests/" + d.String(), false},
		{"/v2/repo/blobs/sha256:short", false},
		{"/other/repo/blobs/" + d.String(), false},
	} {
		got, ok := blobPathDigest(tc.path)
		if ok != tc.want || (ok && got != d) {
			t.Errorf("%s: %s %v, want %v", tc.path, got, ok, tc.want)
		}
	}
}
