package remote

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fakeRegistry is a registry-like HTTP server for one repository: /v2/,
// HEAD and GET of /v2/<repo>/blobs/<digest> with Range support, and an
// optional bearer-token flow. Its knobs inject the faults a real registry
// or mirror shows.
type fakeRegistry struct {
	srv  *httptest.Server
	repo string

	mu       sync.Mutex
	blobs    map[digest.Digest][]byte
	requests []*http.Request // blob requests, in arrival order
	tokenReq []*http.Request

	// Knobs, set before use.
	status          int    // non-zero: every blob request gets this status
	noHead          bool   // HEAD answers 405
	ignoreRange     bool   // GET answers 200 with the whole blob
	badContentRange bool   // Content-Range one byte off
	shortBody       bool   // body half as long as the range
	stall           bool   // never answer blob GETs with a range
	noSuffix        bool   // a suffix range ("bytes=-N") answers 416
	suffixWhole     bool   // a suffix range answers 200 with the whole blob
	token           string // non-empty: blobs need "Bearer <token>"
	user, pass      string // non-empty: the token server needs these
	tokenStatus     int    // non-zero: the token server answers this status
}

func newFakeRegistry(t *testing.T, repo string) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{repo: repo, blobs: make(map[digest.Digest][]byte)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// host is the server's host:port, as it appears in image refs.
func (f *fakeRegistry) host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeRegistry) ref() string { return f.host() + "/" + f.repo + ":latest" }

func (f *fakeRegistry) addBlob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	f.mu.Lock()
	f.blobs[d] = b
	f.mu.Unlock()
	return d
}

func (f *fakeRegistry) set(fn func(f *fakeRegistry)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// blobRequests returns the blob requests seen so far with the given method
// ("" for all).
func (f *fakeRegistry) blobRequests(method string) []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*http.Request
	for _, r := range f.requests {
		if method == "" || r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeRegistry) tokenRequests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.tokenReq...)
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/token":
		f.serveToken(w, r)
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			f.challenge(w)
			return
		}
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(r.URL.Path, "/v2/"+f.repo+"/blobs/"):
		f.requests = append(f.requests, r.Clone(r.Context()))
		f.serveBlob(w, r, digest.Digest(strings.TrimPrefix(r.URL.Path, "/v2/"+f.repo+"/blobs/")))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRegistry) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake",scope="repository:%s:pull"`, f.srv.URL, f.repo))
	w.WriteHeader(http.StatusUnauthorized)
}

func (f *fakeRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokenReq = append(f.tokenReq, r.Clone(r.Context()))
	user, pass, _ := r.BasicAuth()
	if r.Method == http.MethodPost { // containerd's OAuth form when it has a secret
		_ = r.ParseForm()
		user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
	}
	if f.tokenStatus != 0 {
		w.WriteHeader(f.tokenStatus)
		return
	}
	if f.user != "" && (user != f.user || pass != f.pass) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": f.token, "access_token": f.token, "expires_in": 300,
	})
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, r *http.Request, d digest.Digest) {
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		f.challenge(w)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	blob, ok := f.blobs[d]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodHead && f.noHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	rng := r.Header.Get("Range")
	if r.Method == http.MethodGet && rng != "" {
		switch {
		case f.noSuffix && strings.HasPrefix(rng, "bytes=-"):
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		case f.suffixWhole && strings.HasPrefix(rng, "bytes=-"):
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(blob)
			return
		case f.stall:
			f.mu.Unlock()
			<-r.Context().Done()
			f.mu.Lock()
			return
		case f.ignoreRange:
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(blob)
			return
		case f.badContentRange || f.shortBody:
			var first, last int64
			if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &first, &last); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			body := blob[first : last+1]
			if f.badContentRange {
				first, last = first+1, last+1
			}
			if f.shortBody {
				body = body[:len(body)/2]
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(blob)))
			w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body)
			return
		}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

// quick shortens the deadline and backoffs of o for tests of failures:
// a read that cannot succeed gives up in about a second, not
// DefaultReadTimeout.
func quick(o Options) Options {
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	o.BackoffMax = 50 * time.Millisecond
	o.BreakerProbeMax = 100 * time.Millisecond
	return o
}
