// Package testregistry is a fake OCI registry for tests, and the eStargz
// layer it usually serves. It answers what lazyfs asks of a registry: /v2/,
// HEAD and ranged GET of /v2/<repo>/blobs/<digest>.
package testregistry

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Registry serves blobs of one repository. It can be stopped and started
// again on the same address, since image refs name the port.
type Registry struct {
	t    testing.TB
	repo string
	addr string

	mu    sync.Mutex
	srv   *httptest.Server
	blobs map[digest.Digest][]byte
	gets  int // ranged blob GETs served
	// held, while set, keeps ranged blob GETs waiting until Release;
	// stalled receives one value per request it holds.
	held    chan struct{}
	stalled chan struct{}
}

// New starts a registry for repo on a free port of 127.0.0.1. Cleanup
// stops it.
func New(t testing.TB, repo string) *Registry {
	t.Helper()
	f := &Registry{t: t, repo: repo, blobs: map[digest.Digest][]byte{}, stalled: make(chan struct{}, 64)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.serveOn(l)
	t.Cleanup(f.Stop)
	return f
}

// Ref is an image reference in the registry; the tag is not used for blobs.
func (f *Registry) Ref(tag string) string { return f.addr + "/" + f.repo + ":" + tag }

// AddBlob serves b under its digest.
func (f *Registry) AddBlob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	f.mu.Lock()
	f.blobs[d] = b
	f.mu.Unlock()
	return d
}

// ServeAs serves b under d, whatever b's own digest: a registry that lies,
// or bytes corrupted on their way.
func (f *Registry) ServeAs(d digest.Digest, b []byte) {
	f.mu.Lock()
	f.blobs[d] = b
	f.mu.Unlock()
}

// RangedGets counts the ranged blob GETs served so far.
func (f *Registry) RangedGets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets
}

// Hold makes ranged blob GETs wait until Release: reads of file contents
// then block in the worker.
func (f *Registry) Hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
}

// Release lets held requests go on.
func (f *Registry) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// Stalled receives a value each time Hold stops a request (dropped when
// 64 are pending).
func (f *Registry) Stalled() <-chan struct{} { return f.stalled }

// Stop takes the registry down: connections to it are refused.
func (f *Registry) Stop() {
	f.Release() // a held request would keep Close waiting
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Start brings a stopped registry back on its address.
func (f *Registry) Start() {
	f.t.Helper()
	var l net.Listener
	var err error
	// The port was ours a moment ago; give the kernel a little time to
	// let it go.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if l, err = net.Listen("tcp", f.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("restart registry on %s: %v", f.addr, err)
	}
	f.serveOn(l)
}

func (f *Registry) serveOn(l net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

func (f *Registry) serve(w http.ResponseWriter, r *http.Request) {
	prefix := "/v2/" + f.repo + "/blobs/"
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(r.URL.Path, prefix) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		ranged := r.Method == http.MethodGet && r.Header.Get("Range") != ""
		f.mu.Lock()
		blob, ok := f.blobs[digest.Digest(strings.TrimPrefix(r.URL.Path, prefix))]
		if ranged {
			f.gets++
		}
		held := f.held
		f.mu.Unlock()
		if held != nil && ranged {
			select {
			case f.stalled <- struct{}{}:
			default:
			}
			select {
			case <-held:
			case <-r.Context().Done():
				return
			}
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(blob).String())
		// ServeContent answers HEAD and single ranges as a registry does.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	default:
		http.NotFound(w, r)
	}
}
