package remote

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
)

func TestTokenAuth(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	reg.token = "s3cr3t-token"
	data := testBlob(1000)
	d := reg.addBlob(data)

	b, err := NewResolver(quick(Options{})).Blob(ctx, reg.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		p := make([]byte, 100)
		if _, err := b.ReadAt(ctx, p, int64(i*100)); err != nil || !bytes.Equal(p, data[i*100:(i+1)*100]) {
			t.Fatalf("ReadAt %d: %v", i, err)
		}
	}

	toks := reg.tokenRequests()
	if len(toks) != 1 {
		t.Fatalf("token server asked %d times, want once (the token is reused)", len(toks))
	}
	if got, want := toks[0].URL.Query().Get("scope"), "repository:library/test:pull"; got != want {
		t.Errorf("token scope = %q, want %q", got, want)
	}
	// Anonymous HEAD → 401, HEAD with the token, then three GETs with it.
	reqs := reg.blobRequests("")
	if len(reqs) != 5 {
		t.Fatalf("sent %d blob requests, want 5", len(reqs))
	}
	if reqs[0].Header.Get("Authorization") != "" {
		t.Error("first request already carried credentials")
	}
	for _, r := range reqs[1:] {
		if r.Header.Get("Authorization") != "Bearer s3cr3t-token" {
			t.Errorf("%s %s without the token", r.Method, r.Header.Get("Range"))
		}
	}
}

// TestTokenServerDownIsUnavailable guards do's check of the authorizer's
// answer: a token server that fails (503) makes the read unavailable (a
// later one may succeed), never a request sent without its token whose
// 401 reads as refused credentials.
func TestTokenServerDownIsUnavailable(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	reg.token, reg.tokenStatus = "tok", http.StatusServiceUnavailable
	d := reg.addBlob(testBlob(10))
	_, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).Blob(ctx, reg.ref(), d)
	if !errdefs.IsUnavailable(err) || errdefs.IsUnauthorized(err) {
		t.Fatalf("Blob with the token server down = %v, want unavailable (not unauthenticated)", err)
	}
}

func TestCredentials(t *testing.T) {
	for _, tc := range []struct {
		name     string
		user     string
		pass     string
		wantErr  func(error) bool
		wantUsed bool
	}{
		{name: "right credentials", user: "alice", pass: "wonderland", wantUsed: true},
		{name: "wrong credentials", user: "alice", pass: "nope", wantErr: errdefs.IsUnauthorized, wantUsed: true},
		{name: "anonymous", wantErr: errdefs.IsUnauthorized, wantUsed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			reg := newFakeRegistry(t, "private/app")
			reg.token, reg.user, reg.pass = "tok", "alice", "wonderland"
			d := reg.addBlob(testBlob(10))

			var mu sync.Mutex
			var asked []string
			r := NewResolver(quick(Options{Credentials: func(host string) (string, string, error) {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, host)
				return tc.user, tc.pass, nil
			}}))
			_, err := r.Blob(ctx, reg.ref(), d)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Blob: %v", err)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("Blob: err = %v, want unauthenticated", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.wantUsed && (len(asked) == 0 || asked[0] != reg.host()) {
				t.Errorf("credentials asked for %v, want %s", asked, reg.host())
			}
		})
	}
}

func TestMirrors(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	upstream := newFakeRegistry(t, "library/test")
	data := testBlob(5000)
	d := upstream.addBlob(data)
	broken := newFakeRegistry(t, "library/test")
	broken.status = http.StatusBadGateway
	empty := newFakeRegistry(t, "library/test") // a mirror without the blob

	dir := t.TempDir()
	writeHostsToml(t, dir, upstream.host(), `
server = "`+upstream.srv.URL+`"
[host."`+broken.srv.URL+`"]
  capabilities = ["pull"]
[host."`+empty.srv.URL+`"]
  capabilities = ["pull"]
[host."`+upstream.srv.URL+`"]
  capabilities = ["pull", "resolve"]
  [host."`+upstream.srv.URL+`".header]
    X-Lazyfs-Test = "from-hosts-toml"
`)

	b, err := NewResolver(quick(Options{HostsDir: dir})).Blob(ctx, upstream.ref(), d)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if _, err := b.ReadAt(ctx, p, 3000); err != nil || !bytes.Equal(p, data[3000:4000]) {
		t.Fatalf("ReadAt: %v", err)
	}

	for _, m := range []*fakeRegistry{broken, empty} {
		reqs := m.blobRequests("")
		if len(reqs) != 2 { // the size, then the read
			t.Errorf("mirror %s got %d requests, want 2", m.host(), len(reqs))
		}
		for _, r := range reqs {
			if ns := r.URL.Query().Get("ns"); ns != upstream.host() {
				t.Errorf("mirror request has ns=%q, want %q", ns, upstream.host())
			}
		}
	}
	ups := upstream.blobRequests("")
	if len(ups) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(ups))
	}
	for _, r := range ups {
		if r.URL.RawQuery != "" {
			t.Errorf("upstream request has query %q", r.URL.RawQuery)
		}
		if got := r.Header.Get("X-Lazyfs-Test"); got != "from-hosts-toml" {
			t.Errorf("header from hosts.toml = %q", got)
		}
	}

	// When every host fails, the error is the last host's.
	upstream.set(func(f *fakeRegistry) { f.status = http.StatusServiceUnavailable })
	_, err = b.ReadAt(ctx, p, 0)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), upstream.host()) {
		t.Errorf("all hosts down: err = %v, want unavailable naming %s", err, upstream.host())
	}
}

func TestHostsCached(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	reg.token = "tok"
	d1, d2 := reg.addBlob(testBlob(10)), reg.addBlob(testBlob(20))
	r := NewResolver(quick(Options{}))
	if _, err := r.Blob(ctx, reg.ref(), d1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Blob(ctx, reg.ref(), d2); err != nil {
		t.Fatal(err)
	}
	// One client and authorizer per registry: the token is fetched once.
	if n := len(reg.tokenRequests()); n != 1 {
		t.Errorf("token fetched %d times for two blobs, want 1", n)
	}
}

// Past HostsTTL the hosts (and the tokens their authorizers hold) are kept
// unless a hosts.toml changed.
func TestHostsKeptUntilHostsTomlChanges(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	reg.token = "tok"
	d := reg.addBlob(testBlob(10))
	dir := t.TempDir()
	host := strings.SplitN(reg.ref(), "/", 2)[0]
	hdir := filepath.Join(dir, host)
	if err := os.MkdirAll(hdir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := "server = \"http://" + host + "\"\n"
	if err := os.WriteFile(filepath.Join(hdir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(quick(Options{HostsDir: dir, HostsTTL: time.Nanosecond}))
	for range 3 {
		if _, err := r.Blob(ctx, reg.ref(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(reg.tokenRequests()); n != 1 {
		t.Fatalf("token fetched %d times with hosts.toml unchanged, want 1", n)
	}
	if err := os.WriteFile(filepath.Join(hdir, "hosts.toml"), []byte(toml+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Blob(ctx, reg.ref(), d); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.tokenRequests()); n != 2 {
		t.Fatalf("token fetched %d times after hosts.toml changed, want 2 (hosts configured again)", n)
	}
}

// TestNoPullHostRefused guards the check of the hosts a registry has: a
// hosts.toml whose every host lacks the pull capability is refused,
// naming why, rather than read as a registry that failed.
func TestNoPullHostRefused(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	reg := newFakeRegistry(t, "library/test")
	d := reg.addBlob(testBlob(10))
	dir := t.TempDir()
	writeHostsToml(t, dir, reg.host(), `
server = "`+reg.srv.URL+`"
capabilities = ["resolve"]
[host."`+reg.srv.URL+`"]
  capabilities = ["resolve"]
`)
	_, err := NewResolver(quick(Options{HostsDir: dir})).Blob(ctx, reg.ref(), d)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no host with pull capability") {
		t.Fatalf("Blob with no pull host = %v, want not found naming the missing pull capability", err)
	}
	if n := len(reg.blobRequests("")); n != 0 {
		t.Errorf("%d blob requests to a host without pull capability", n)
	}
}
