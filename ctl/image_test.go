package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/labels"
)

func TestRegistryHosts(t *testing.T) {
	hostsDir := t.TempDir()
	mirrored := filepath.Join(hostsDir, "registry.example.com")
	if err := os.MkdirAll(mirrored, 0o755); err != nil {
		t.Fatal(err)
	}
	hostsTOML := "server = \"https://registry.example.com\"\n\n[host.\"http://mirror.local:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(mirrored, "hosts.toml"), []byte(hostsTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		opts   resolverOptions
		host   string
		scheme string // of the first host
		first  string
	}{
		{"remote registry", resolverOptions{}, "registry.other.com", "https", "registry.other.com"},
		{"plain http asked for", resolverOptions{plainHTTP: true}, "registry.other.com", "http", "registry.other.com"},
		{"localhost", resolverOptions{}, "localhost:5000", "http", "localhost:5000"},
		{"loopback", resolverOptions{}, "127.0.0.1:5000", "http", "127.0.0.1:5000"},
		{"hosts.toml mirror", resolverOptions{hostsDir: hostsDir}, "registry.example.com", "http", "mirror.local:5000"},
		{"hosts dir without the host", resolverOptions{hostsDir: hostsDir}, "registry.other.com", "https", "registry.other.com"},
		{"missing hosts dir", resolverOptions{hostsDir: filepath.Join(hostsDir, "none")}, "registry.other.com", "https", "registry.other.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := registryHosts(context.Background(), tc.opts)(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if len(hosts) == 0 || hosts[0].Scheme != tc.scheme || hosts[0].Host != tc.first {
				t.Fatalf("hosts %+v, want %s://%s first", hosts, tc.scheme, tc.first)
			}
		})
	}
}

// memContent is a content.Provider over blobs in memory.
type memContent map[digest.Digest][]byte

func (m memContent) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	b, ok := m[desc.Digest]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return nopCloser{bytes.NewReader(b)}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// fakeSnapshots holds committed snapshots by name.
type fakeSnapshots struct {
	mu    sync.Mutex
	infos map[string]snapshots.Info
}

func (f *fakeSnapshots) Stat(_ context.Context, key string) (snapshots.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.infos[key]
	if !ok {
		return snapshots.Info{}, errdefs.ErrNotFound
	}
	return info, nil
}

func (f *fakeSnapshots) commit(key string, remote bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := snapshots.Info{Name: key, Kind: snapshots.KindCommitted}
	if remote {
		info.Labels = map[string]string{labels.Remote: "img-w1"}
	}
	f.infos[key] = info
}

// pullFixture is an image of three layers as a pull's handlers see it.
type pullFixture struct {
	manifest, config ocispec.Descriptor
	layers           []ocispec.Descriptor
	chainIDs         []digest.Digest
	cs               memContent
}

func newPullFixture(t *testing.T) pullFixture {
	t.Helper()
	var f pullFixture
	var diffIDs []digest.Digest
	for i, s := range []string{"base", "lazy", "plain"} {
		f.layers = append(f.layers, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.FromString("blob " + s),
			Size:      int64(3<<20 + i),
		})
		diffIDs = append(diffIDs, digest.FromString("diff "+s))
	}
	f.chainIDs = identity.ChainIDs(slices.Clone(diffIDs))
	cfg, err := json.Marshal(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	if err != nil {
		t.Fatal(err)
	}
	f.config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	f.manifest = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("manifest")}
	f.cs = memContent{f.config.Digest: cfg}
	return f
}

// handler answers like containerd's fetch handlers: a manifest's children
// are its config and layers.
func (f pullFixture) handler() images.Handler {
	return images.HandlerFunc(func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if desc.Digest == f.manifest.Digest {
			return append([]ocispec.Descriptor{f.config}, f.layers...), nil
		}
		return nil, nil
	})
}

// TestPullProgress plays a pull where the first layer's snapshot exists
// already, the second is mounted lazily (never fetched) and the third is
// fetched and unpacked, and checks what is reported.
func TestPullProgress(t *testing.T) {
	f := newPullFixture(t)
	sn := &fakeSnapshots{infos: map[string]snapshots.Info{}}
	sn.commit(f.chainIDs[0].String(), true)
	var out syncBuffer
	p := newPullProgress(&lineWriter{w: &out}, sn, f.cs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		p.poll(ctx, 2*time.Millisecond)
	}()

	h := p.wrap(f.handler())
	for _, d := range []ocispec.Descriptor{f.manifest, f.config} {
		if _, err := h.Handle(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	sn.commit(f.chainIDs[1].String(), true)
	waitFor(t, "the lazy layer", func() bool { return strings.Contains(out.String(), "lazily mounted"+unverifiedNote+"\n") })
	if _, err := h.Handle(ctx, f.layers[2]); err != nil {
		t.Fatal(err)
	}
	sn.commit(f.chainIDs[2].String(), false)
	waitFor(t, "the unpacked layer", func() bool { return strings.Contains(out.String(), " unpacked\n") })
	cancel()
	<-polled

	sum, err := p.settleAll(context.Background(), f.layers, f.chainIDs)
	if err != nil {
		t.Fatal(err)
	}
	if want := (pullSummary{layers: 3, lazy: 2, unpacked: 1}); sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	want := []string{
		"3 layers",
		"layer " + shortDigest(f.layers[0].Digest) + " lazily mounted" + unverifiedNote + " (already present)",
		"layer " + shortDigest(f.layers[1].Digest) + " lazily mounted" + unverifiedNote,
		"layer " + shortDigest(f.layers[2].Digest) + " fetching (3.0 MiB)",
		"layer " + shortDigest(f.layers[2].Digest) + " fetched",
		"layer " + shortDigest(f.layers[2].Digest) + " unpacked",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("reported:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

// TestPullProgressSettleAll covers a pull whose handlers were never seen
// (the outcomes come from the final look at the snapshots only) and a layer
// without a snapshot.
func TestPullProgressSettleAll(t *testing.T) {
	f := newPullFixture(t)
	sn := &fakeSnapshots{infos: map[string]snapshots.Info{}}
	sn.commit(f.chainIDs[0].String(), false)
	sn.commit(f.chainIDs[1].String(), true)
	var out syncBuffer
	p := newPullProgress(&lineWriter{w: &out}, sn, f.cs)
	sum, err := p.settleAll(context.Background(), f.layers, f.chainIDs)
	if err != nil {
		t.Fatal(err)
	}
	if want := (pullSummary{layers: 3, lazy: 1, unpacked: 1, missing: 1}); sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	want := "layer " + shortDigest(f.layers[0].Digest) + " unpacked\n" +
		"layer " + shortDigest(f.layers[1].Digest) + " lazily mounted" + unverifiedNote + "\n" +
		"layer " + shortDigest(f.layers[2].Digest) + " has no snapshot (chain id " + f.chainIDs[2].String() + ")\n"
	if out.String() != want {
		t.Errorf("reported:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestPullProgressNeverFailsThePull: a config the progress cannot read
// changes nothing about what the handler returns.
func TestPullProgressNeverFailsThePull(t *testing.T) {
	f := newPullFixture(t)
	var out syncBuffer
	p := newPullProgress(&lineWriter{w: &out}, &fakeSnapshots{infos: map[string]snapshots.Info{}}, memContent{})
	h := p.wrap(f.handler())
	children, err := h.Handle(context.Background(), f.manifest)
	if err != nil || len(children) != 4 {
		t.Fatalf("manifest: %d children, %v", len(children), err)
	}
	if _, err := h.Handle(context.Background(), f.config); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	failing := p.wrap(images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) { return nil, boom }))
	if _, err := failing.Handle(context.Background(), f.layers[0]); !errors.Is(err, boom) {
		t.Errorf("error %v, want the handler's", err)
	}
}

func TestConvertProgress(t *testing.T) {
	src := []digest.Digest{digest.FromString("a"), digest.FromString("b"), digest.FromString("c"), digest.FromString("d")}
	newDesc := ocispec.Descriptor{Digest: digest.FromString("a-esgz"), Size: 2 << 20}
	var out syncBuffer
	p := convertProgress{out: &lineWriter{w: &out}}
	for _, ev := range []convert.Event{
		{Digest: src[0], Size: 1 << 20},
		{Digest: src[0], Size: 1 << 20, Done: true, Converted: &newDesc},
		{Digest: src[1], Size: 10, Done: true},
		{Digest: src[2], Size: 10, Done: true, Converted: &ocispec.Descriptor{Digest: src[2]}},
		{Digest: src[3], Size: 10, Done: true, Err: errors.New("bad tar")},
	} {
		p.report(ev)
	}
	want := "layer " + shortDigest(src[0]) + " converting (1.0 MiB)\n" +
		"layer " + shortDigest(src[0]) + " converted to " + shortDigest(newDesc.Digest) + " (2.0 MiB)\n" +
		"layer " + shortDigest(src[1]) + " kept as it is\n" +
		"layer " + shortDigest(src[2]) + " already eStargz, annotated\n" +
		"layer " + shortDigest(src[3]) + " failed: bad tar\n"
	if out.String() != want {
		t.Errorf("reported:\n%s\nwant:\n%s", out.String(), want)
	}
	if c, k, f := p.counts(); c != 2 || k != 1 || f != 1 {
		t.Errorf("counts %d converted, %d kept, %d failed", c, k, f)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3<<20 + 300<<10: "3.3 MiB", 5 << 30: "5.0 GiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
	d := digest.Digest("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if got := shortDigest(d); got != "sha256:0123456789ab…" {
		t.Errorf("shortDigest = %q", got)
	}
	if got := shortDigest("not-a-digest"); got != "not-a-digest" {
		t.Errorf("shortDigest of garbage = %q", got)
	}
}

// TestImageCommandsNeedContainerd: without containerd at --address, pull
// and convert fail at once with one line naming the socket.
func TestImageCommandsNeedContainerd(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "containerd.sock")
	// An empty config: the defaults, whatever this machine has in /etc.
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"image", "pull", "127.0.0.1:5000/app:v1"},
		{"image", "convert", "a", "b"},
	} {
		start := time.Now()
		code, stdout, stderr := runCLI(t, append(args, "--address", sock, "--config", cfg)...)
		if code != exitError || !strings.Contains(stderr, "containerd at "+sock+" does not answer") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit status %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%q took %s to fail", args, d)
		}
	}
	code, _, stderr := runCLI(t, "image", "pull", "Not A Ref", "--address", sock, "--config", cfg)
	if code != exitError || !strings.Contains(stderr, `invalid image reference "Not A Ref"`) {
		t.Errorf("bad ref: exit status %d, stderr %q", code, stderr)
	}
}

const unverifiedNote = ", unverified (proof in the background)"

// TestIdentityNote: pull names each lazily mounted layer's proof state.
func TestIdentityNote(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{}, unverifiedNote},
		{map[string]string{labels.Verified: "sha256:aa"}, ", verified"},
		{map[string]string{labels.Forged: "sha256:bb"}, ", forged: its blob has DiffID sha256:bb (quarantined)"},
	} {
		if got := identityNote(tc.labels); got != tc.want {
			t.Errorf("identityNote(%v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}
