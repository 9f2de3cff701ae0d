package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/tests/harness"
	"github.com/lazyfs/lazyfs/toc"
)

// hostileTag names the tampered copy of the eStargz image in the stack's
// registry.
const hostileTag = "hostile"

// TestHostileLayerFallsBack pulls a copy of the eStargz image whose manifest
// gives one layer a TOC digest that is not its table of contents' digest:
// lazyfs refuses that layer, containerd unpacks it as usual (verifying the
// whole blob), every other layer is still mounted lazily, the snapshotter
// counts a mount_failed fallback and logs the mismatch, and a container
// from the image reads every file right.
func TestHostileLayerFallsBack(t *testing.T) {
	s := startStack(t, harness.V2)
	img := s.convertToEStargz(t, "")
	bad := len(img.layers) / 2
	ref := s.pushTampered(t, img, bad, digest.FromString("not the toc"))

	s.pullRef(t, ref, "lazyfs")

	sn := s.cl.SnapshotService("lazyfs")
	for i, chainID := range img.chainIDs {
		info, err := sn.Stat(context.Background(), chainID)
		if err != nil {
			t.Errorf("layer %d (%s): snapshot %s: %v", i+1, img.layers[i].Digest, chainID, err)
			continue
		}
		remote := info.Labels[labels.Remote] != ""
		if info.Kind != snapshots.KindCommitted || remote != (i != bad) {
			t.Errorf("layer %d (%s, tampered: %v): snapshot %s is %v with labels %v, want committed and remote=%v",
				i+1, img.layers[i].Digest, i == bad, chainID, info.Kind, info.Labels, i != bad)
		}
	}

	page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
	if got, ok := metricValue(t, page, "lazyfs_fallbacks_total", map[string]string{"reason": "mount_failed"}); !ok || got < 1 {
		t.Errorf(`lazyfs_fallbacks_total{reason="mount_failed"} = %v (present: %v), want >= 1`, got, ok)
	}

	// The refusal names its reason and the layer; it reaches the
	// snapshotter's log through the failed mount, or a worker's log.
	var found []string
	for _, path := range s.snap.Logs() {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // a worker log rotated away
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, toc.ReasonTOCDigestMismatch) && strings.Contains(line, img.layers[bad].Digest.String()) {
				found = append(found, path+": "+line)
			}
		}
	}
	if len(found) == 0 {
		t.Errorf("no log of the snapshotter (%v) names %s for layer %s", s.snap.Logs(), toc.ReasonTOCDigestMismatch, img.layers[bad].Digest)
	} else {
		t.Logf("refusal logged:\n%s", strings.Join(found, "\n"))
	}

	s.runChecksOf(t, ref, "hostile-check")
}

// pushTampered pushes a copy of img under hostileTag whose manifest gives
// layer bad the TOC digest annotation tocDigest, then removes every local
// copy so that a following pull starts from nothing. It returns the copy's
// reference.
func (s *stack) pushTampered(t *testing.T, img estargzImage, bad int, tocDigest digest.Digest) string {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The lease keeps the fetched blobs until the new image references
	// them; it is released before the image is removed, so that the
	// removal's garbage collection leaves nothing behind.
	lctx, done, err := s.cl.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			if err := done(context.Background()); err != nil {
				t.Errorf("release lease: %v", err)
			}
		}
	}
	defer release()
	ctx = lctx

	srcRef := s.reg.Addr() + "/" + estargzRepo + ":" + estargzTag
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{DefaultScheme: "http"}),
	})
	src, err := s.cl.Fetch(ctx, srcRef, client.WithResolver(resolver))
	if err != nil {
		t.Fatalf("fetch %s: %v", srcRef, err)
	}
	cs := s.cl.ContentStore()
	manifest, err := images.Manifest(ctx, cs, src.Target, platforms.Default())
	if err != nil {
		t.Fatalf("manifest of %s: %v", srcRef, err)
	}
	if len(manifest.Layers) != len(img.layers) || manifest.Layers[bad].Digest != img.layers[bad].Digest {
		t.Fatalf("manifest of %s does not list the converted layers: %v", srcRef, manifest.Layers)
	}
	old := manifest.Layers[bad].Annotations[labels.TOCDigest]
	if old == tocDigest.String() {
		t.Fatalf("layer %d already has TOC digest %s", bad+1, tocDigest)
	}
	manifest.Layers[bad].Annotations[labels.TOCDigest] = tocDigest.String()
	if manifest.MediaType == "" {
		manifest.MediaType = ocispec.MediaTypeImageManifest
	}
	raw, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: manifest.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	// The GC labels keep the config and layers alive for as long as the
	// new manifest is.
	gcLabels := map[string]string{"containerd.io/gc.ref.content.config": manifest.Config.Digest.String()}
	for i, l := range manifest.Layers {
		gcLabels[fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i)] = l.Digest.String()
	}
	if err := content.WriteBlob(ctx, cs, "hostile-manifest-"+desc.Digest.Encoded(), bytes.NewReader(raw), desc, content.WithLabels(gcLabels)); err != nil {
		t.Fatalf("write tampered manifest: %v", err)
	}

	ref := s.reg.Addr() + "/" + estargzRepo + ":" + hostileTag
	if _, err := s.cl.ImageService().Create(ctx, images.Image{Name: ref, Target: desc}); err != nil {
		t.Fatalf("create image %s: %v", ref, err)
	}
	if _, err := s.ctrd.Ctr(ctx, "image", "push", "--plain-http", ref); err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := s.ctrd.Ctr(ctx, "image", "rm", "--sync", ref); err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s: layer %d (%s) annotated with TOC digest %s instead of %s, in %v",
		ref, bad+1, manifest.Layers[bad].Digest, tocDigest, old, time.Since(start).Round(time.Millisecond))
	return ref
}
