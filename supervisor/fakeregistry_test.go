package supervisor

import (
	"archive/tar"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// fakeRegistry serves blobs of one repository the way a registry does
// (/v2/, HEAD and ranged GET of /v2/<repo>/blobs/<digest>). It can be
// stopped and started again on the same address, since image refs name the
// port.
type fakeRegistry struct {
	t    testing.TB
	repo string
	addr string

	mu    sync.Mutex
	srv   *httptest.Server
	blobs map[digest.Digest][]byte
	// held, while set, keeps ranged blob GETs waiting until release;
	// stalled receives one value per request it holds.
	held    chan struct{}
	stalled chan struct{}
}

func newFakeRegistry(t testing.TB, repo string) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{t: t, repo: repo, blobs: map[digest.Digest][]byte{}, stalled: make(chan struct{}, 64)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.serveOn(l)
	t.Cleanup(f.stop)
	return f
}

// ref is an image reference in the registry; the tag is not used for blobs.
func (f *fakeRegistry) ref(tag string) string { return f.addr + "/" + f.repo + ":" + tag }

func (f *fakeRegistry) addBlob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	f.mu.Lock()
	f.blobs[d] = b
	f.mu.Unlock()
	return d
}

// hold makes ranged blob GETs wait until release: reads of file contents
// then block in the worker.
func (f *fakeRegistry) hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
}

func (f *fakeRegistry) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// stop takes the registry down: connections to it are refused.
func (f *fakeRegistry) stop() {
	f.release() // a held request would keep Close waiting
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start brings a stopped registry back on its address.
func (f *fakeRegistry) start() {
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

func (f *fakeRegistry) serveOn(l net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	prefix := "/v2/" + f.repo + "/blobs/"
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(r.URL.Path, prefix) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		f.mu.Lock()
		blob, ok := f.blobs[digest.Digest(strings.TrimPrefix(r.URL.Path, prefix))]
		held := f.held
		f.mu.Unlock()
		if held != nil && r.Method == http.MethodGet && r.Header.Get("Range") != "" {
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

// testLayer is an eStargz layer built in the test, and what it holds.
type testLayer struct {
	blob      []byte
	digest    digest.Digest
	tocDigest digest.Digest
	files     map[string][]byte // regular files by path
	links     map[string]string // symlinks by path
	top       []string          // names in the root directory, sorted
}

// bigFileSize spans several chunks of testChunkSize.
const (
	testChunkSize = 64 << 10
	bigFileSize   = 5*testChunkSize + 1234
)

// buildLayer writes a tar with a few files (one of them spanning several
// chunks) and converts it with estargz.Build.
func buildLayer(t testing.TB, salt string) *testLayer {
	t.Helper()
	l := &testLayer{
		files: map[string][]byte{
			"etc/hello.txt":    []byte("hello from lazyfs " + salt + "\n"),
			"etc/empty":        nil,
			"usr/bin/big.bin":  noise(bigFileSize, salt),
			"usr/share/a.conf": []byte(strings.Repeat("key = value\n", 100)),
		},
		links: map[string]string{"hello": "etc/hello.txt"},
		top:   []string{"etc", "hello", "usr"},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, d := range []string{"etc/", "usr/", "usr/bin/", "usr/share/"} {
		writeTar(t, tw, &tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}, nil)
	}
	for _, name := range []string{"etc/hello.txt", "etc/empty", "usr/bin/big.bin", "usr/share/a.conf"} {
		body := l.files[name]
		writeTar(t, tw, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime}, body)
	}
	writeTar(t, tw, &tar.Header{Name: "hello", Typeflag: tar.TypeSymlink, Linkname: "etc/hello.txt", Mode: 0o777, ModTime: mtime}, nil)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))), estargz.WithChunkSize(testChunkSize))
	if err != nil {
		t.Fatalf("estargz.Build: %v", err)
	}
	defer b.Close()
	if l.blob, err = io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	l.digest = digest.FromBytes(l.blob)
	l.tocDigest = b.TOCDigest()
	return l
}

func writeTar(t testing.TB, tw *tar.Writer, h *tar.Header, body []byte) {
	t.Helper()
	h.Format = tar.FormatPAX
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
}

// noise is deterministic, poorly compressible content.
func noise(n int, salt string) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for _, c := range salt {
		x = x*31 + uint32(c)
	}
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
