package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/log/logtest"
	"github.com/containerd/platforms"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/labels"
)

// estargzRepo and estargzTag name the eStargz copy of the test image in a
// stack's registry (the original is lazyfs/test:v1).
const (
	estargzRepo = "lazyfs/test"
	estargzTag  = "estargz"
)

// estargzImage is the test image converted to eStargz and pushed to the
// stack's registry.
type estargzImage struct {
	// ref is what tests pull: through a proxy or gate when one was given.
	ref string
	// layers are the eStargz layer descriptors of the host's manifest, in
	// order, each annotated with its TOC digest.
	layers []ocispec.Descriptor
	// chainIDs are the chain IDs of the layers' committed snapshots, in the
	// same order.
	chainIDs []string
}

// convertToEStargz converts the original test image inside containerd, as an
// operator would: ctr pull of the original, convert.Image, ctr push, then
// ctr image rm --sync of both, so that a following pull starts from nothing.
// pullHost is the host:port the returned ref goes through (a proxy or gate in
// front of the registry); "" means the registry itself.
func (s *stack) convertToEStargz(t testing.TB, pullHost string) estargzImage {
	t.Helper()
	return s.convertImage(t, s.ref, estargzRepo, estargzTag, pullHost)
}

// convertImage is convertToEStargz for any image of the stack's registry:
// srcRef is converted and pushed as repo:tag.
func (s *stack) convertImage(t testing.TB, srcRef, repo, tag, pullHost string) estargzImage {
	t.Helper()
	return s.convertImageWith(t, srcRef, repo, tag, pullHost, convert.Options{})
}

// convertImageWith is convertImage with conversion options.
func (s *stack) convertImageWith(t testing.TB, srcRef, repo, tag, pullHost string, opts convert.Options) estargzImage {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	pushRef := s.reg.Addr() + "/" + repo + ":" + tag
	if _, err := s.ctrd.Ctr(ctx, "image", "pull", "--plain-http", srcRef); err != nil {
		t.Fatal(err)
	}
	// The converter logs through ctx: into the test's output, not stderr.
	img, err := convert.Image(logtest.WithT(ctx, t), s.cl, srcRef, pushRef, opts)
	if err != nil {
		t.Fatal(err)
	}
	cs := s.cl.ContentStore()
	manifest, err := images.Manifest(ctx, cs, img.Target, platforms.Default())
	if err != nil {
		t.Fatalf("manifest of %s: %v", pushRef, err)
	}
	diffIDs, err := images.RootFS(ctx, cs, manifest.Config)
	if err != nil {
		t.Fatalf("rootfs of %s: %v", pushRef, err)
	}
	for i, l := range manifest.Layers {
		// Without this annotation every layer falls back to an ordinary
		// unpack, and the lazy tests would prove nothing.
		if l.Annotations[labels.TOCDigest] == "" {
			t.Fatalf("layer %d (%s) of %s lacks the %s annotation: %v", i+1, l.Digest, pushRef, labels.TOCDigest, l.Annotations)
		}
	}
	if _, err := s.ctrd.Ctr(ctx, "image", "push", "--plain-http", pushRef); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ctrd.Ctr(ctx, "image", "rm", "--sync", srcRef, pushRef); err != nil {
		t.Fatal(err)
	}
	ref := pushRef
	if pullHost != "" {
		ref = pullHost + "/" + repo + ":" + tag
	}
	var chainIDs []string
	for _, id := range identity.ChainIDs(diffIDs) {
		chainIDs = append(chainIDs, id.String())
	}
	t.Logf("converted %s to eStargz (%d layers, %s) and pushed it as %s in %v",
		srcRef, len(manifest.Layers), formatBytes(blobsSize(manifest.Layers)), pushRef, time.Since(start).Round(time.Millisecond))
	return estargzImage{ref: ref, layers: manifest.Layers, chainIDs: chainIDs}
}

func blobsSize(layers []ocispec.Descriptor) int64 {
	var n int64
	for _, l := range layers {
		n += l.Size
	}
	return n
}

// fetchBlob downloads a whole blob of repo from the registry itself (not
// through a proxy, whose counters stay untouched).
func (s *stack) fetchBlob(t *testing.T, repo string, dgst digest.Digest) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://%s/v2/%s/blobs/%s", s.reg.Addr(), repo, dgst)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if got := digest.FromBytes(data); got != dgst {
		t.Fatalf("GET %s: content digest %s", url, got)
	}
	return data
}

// layerWith returns the layer of img whose table of contents lists file
// (an absolute image path), opened from a copy of its blob fetched from the
// registry: it tells where the file's chunks sit in the blob and what they
// hold.
func (s *stack) layerWith(t *testing.T, img estargzImage, file string) (ocispec.Descriptor, *estargz.Reader) {
	t.Helper()
	for _, l := range img.layers {
		blob := s.fetchBlob(t, estargzRepo, l.Digest)
		r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		if _, ok := r.Lookup(strings.TrimPrefix(file, "/")); ok {
			return l, r
		}
	}
	t.Fatalf("no layer of %s holds %s", img.ref, file)
	return ocispec.Descriptor{}, nil
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
