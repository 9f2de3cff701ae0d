package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeRegistry is the smallest registry skopeo can push to: blob uploads
// (POST, PATCH, PUT), blob and manifest HEAD/GET, and manifest PUT.
type fakeRegistry struct {
	t         *testing.T
	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	uploads   map[string]*bytes.Buffer
	manifests map[string][]byte // by tag and by digest
	types     map[string]string
}

func newFakeRegistry(t *testing.T) (*fakeRegistry, string) {
	r := &fakeRegistry{
		t:         t,
		blobs:     map[digest.Digest][]byte{},
		uploads:   map[string]*bytes.Buffer{},
		manifests: map[string][]byte{},
		types:     map[string]string{},
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, strings.TrimPrefix(srv.URL, "http://")
}

func (r *fakeRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := req.URL.Path
	name, rest, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/")
	if p == "/v2/" || p == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	// Repository names in these tests have no slash.
	kind, ref, _ := strings.Cut(rest, "/")
	switch {
	case kind == "blobs" && ref == "uploads/" && req.Method == http.MethodPost:
		id := make([]byte, 8)
		rand.Read(id)
		r.uploads[hex.EncodeToString(id)] = &bytes.Buffer{}
		w.Header().Set("Location", "http://"+req.Host+"/v2/"+name+"/blobs/uploads/"+hex.EncodeToString(id))
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
	case kind == "blobs" && strings.HasPrefix(ref, "uploads/"):
		buf := r.uploads[strings.TrimPrefix(ref, "uploads/")]
		if buf == nil {
			http.NotFound(w, req)
			return
		}
		io.Copy(buf, req.Body)
		if req.Method == http.MethodPatch {
			w.Header().Set("Location", "http://"+req.Host+p)
			w.Header().Set("Range", "0-"+strconv.Itoa(max(buf.Len()-1, 0)))
			w.WriteHeader(http.StatusAccepted)
			return
		}
		d := digest.Digest(req.URL.Query().Get("digest"))
		if digest.FromBytes(buf.Bytes()) != d {
			http.Error(w, "digest mismatch", http.StatusBadRequest)
			return
		}
		r.blobs[d] = bytes.Clone(buf.Bytes())
		w.Header().Set("Location", "http://"+req.Host+"/v2/"+name+"/blobs/"+d.String())
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	case kind == "blobs":
		data, ok := r.blobs[digest.Digest(ref)]
		if !ok {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
	case kind == "manifests" && req.Method == http.MethodPut:
		data, _ := io.ReadAll(req.Body)
		d := digest.FromBytes(data)
		for _, key := range []string{ref, d.String()} {
			r.manifests[key] = data
			r.types[key] = req.Header.Get("Content-Type")
		}
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	case kind == "manifests":
		data, ok := r.manifests[ref]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", r.types[ref])
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(data).String())
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
	default:
		r.t.Logf("fake registry: unexpected %s %s", req.Method, p)
		http.NotFound(w, req)
	}
}

func TestPushThroughProxy(t *testing.T) {
	requireTool(t, "skopeo")
	layout := t.TempDir()
	desc, err := WriteOCILayout(layout, "v1", sampleLayers())
	if err != nil {
		t.Fatal(err)
	}
	reg, upstream := newFakeRegistry(t)
	p := startTestProxy(t, upstream)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := Push(ctx, layout, "v1", p.Addr()+"/pushed:v1"); err != nil {
		t.Fatal(err)
	}

	reg.mu.Lock()
	defer reg.mu.Unlock()
	data, ok := reg.manifests["v1"]
	if !ok {
		t.Fatal("no manifest under the tag")
	}
	if got := digest.FromBytes(data); got != desc.Digest {
		t.Fatalf("pushed manifest %s, layout has %s: digests must be kept", got, desc.Digest)
	}
	img := readLayoutImage(t, layout, "v1")
	for _, b := range append([]ocispec.Descriptor{img.manifest.Config}, img.manifest.Layers...) {
		if got, ok := reg.blobs[b.Digest]; !ok || int64(len(got)) != b.Size {
			t.Errorf("blob %s not pushed intact", b.Digest)
		}
		// A push uploads; it never downloads.
		if p.BlobRequests(b.Digest) != 0 || p.BlobBytes(b.Digest) != 0 {
			t.Errorf("blob %s: %d GETs through the proxy during a push", b.Digest, p.BlobRequests(b.Digest))
		}
	}
}

func TestPushErrorCarriesOutput(t *testing.T) {
	requireTool(t, "skopeo")
	layout := t.TempDir()
	if _, err := WriteOCILayout(layout, "v1", sampleLayers()); err != nil {
		t.Fatal(err)
	}
	// A port that was free a moment ago: nothing listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Push(ctx, layout, "v1", addr+"/x:v1")
	if err == nil {
		t.Fatal("push to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "skopeo output: ") || !strings.Contains(err.Error(), addr) {
		t.Errorf("error lacks skopeo's output: %v", err)
	}

	err = Push(ctx, layout, "no-such-tag", addr+"/x:v1")
	if err == nil || !strings.Contains(err.Error(), "no-such-tag") {
		t.Errorf("unknown tag: %v", err)
	}
}
