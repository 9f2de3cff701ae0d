package convert_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/lazyfs/lazyfs/convert"
)

// TestImage runs Image against containerd's own metadata services (content,
// images, leases, garbage collection) without a daemon.
func TestImage(t *testing.T) {
	fixtureCtx, cs, db := openMetadata(t)
	fx := writeFixture(fixtureCtx, t, cs, true, true, []layerSpec{
		{baseFiles(), compression.Gzip, images.MediaTypeDockerSchema2LayerGzip},
		{appFiles(), compression.Gzip, images.MediaTypeDockerSchema2LayerGzip},
	})
	// No lease: Image must hold its new blobs itself. Its log is kept:
	// what an operator reads of a conversion is checked below.
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctx := namespaces.WithNamespace(log.WithLogger(fixtureCtx, logrus.NewEntry(logger)), "test")
	is := metadata.NewImageStore(db)
	lm := metadata.NewLeaseManager(db)
	if _, err := is.Create(ctx, images.Image{Name: "example.com/app:1", Target: fx.root}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New("", client.WithServices(
		client.WithContentStore(cs),
		client.WithImageStore(is),
		client.WithLeasesService(lm),
	))
	if err != nil {
		t.Fatal(err)
	}
	var ev events

	img, err := convert.Image(ctx, c, "example.com/app:1", "example.com/app:1-esgz", testOptions(&ev))
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "example.com/app:1-esgz" || img.Target.Digest == fx.root.Digest {
		t.Fatalf("converted image %s -> %s, source was %s", img.Name, img.Target.Digest, fx.root.Digest)
	}
	if src, err := is.Get(ctx, "example.com/app:1"); err != nil || src.Target.Digest != fx.root.Digest {
		t.Errorf("source image now %+v, %v", src.Target, err)
	}
	if dst, err := is.Get(ctx, img.Name); err != nil || dst.Target.Digest != img.Target.Digest {
		t.Errorf("stored image %+v, %v; returned %s", dst.Target, err, img.Target.Digest)
	}
	// The same source converted again builds the same blobs: they exist
	// already, and only get their labels, also when they lost them
	// (checkConversionLog: no failure logged on the way).
	unlabelled := stripUncompressedLabels(ctx, t, cs)
	if len(unlabelled) == 0 {
		t.Fatal("no converted blob carries its uncompressed label")
	}
	if twice, err := convert.Image(ctx, c, "example.com/app:1", "example.com/app:1-esgz2", testOptions(&events{})); err != nil || twice.Target.Digest != img.Target.Digest {
		t.Fatalf("second conversion of the source: %v, %v; want %s", twice.Target, err, img.Target.Digest)
	}
	for _, d := range unlabelled {
		if info, err := cs.Info(ctx, d); err != nil || info.Labels[labels.LabelUncompressed] == "" {
			t.Errorf("blob %s after it was built again: labels %v, %v; want its uncompressed label back", d, info.Labels, err)
		}
	}
	if ls, err := lm.List(ctx); err != nil || len(ls) != 1 {
		t.Errorf("leases after conversion %+v, %v; want only the fixture's", ls, err)
	}

	// With the source image and every lease gone, garbage collection must
	// keep exactly what the converted image references.
	if err := lm.Delete(ctx, leases.Lease{ID: "fixture"}); err != nil {
		t.Fatal(err)
	}
	if err := is.Delete(ctx, "example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Info(ctx, fx.layers[0].desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("source layer after garbage collection: %v, want not found", err)
	}
	checkImage(ctx, t, cs, img.Target, fx.want, true)

	t.Run("in place again", func(t *testing.T) {
		again, err := convert.Image(ctx, c, img.Name, img.Name, testOptions(&events{}))
		if err != nil {
			t.Fatal(err)
		}
		if again.Target.Digest != img.Target.Digest {
			t.Errorf("converting the converted image changed it to %s", again.Target.Digest)
		}
	})
	checkConversionLog(t, hook)

	errCases := []struct {
		name string
		src  string
		opts convert.Options
		is   func(error) bool
	}{
		{"missing image", "example.com/missing:1", convert.Options{}, errdefs.IsNotFound},
		{"invalid options", img.Name, convert.Options{ChunkSize: -1}, errdefs.IsInvalidArgument},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert.Image(ctx, c, tc.src, "example.com/out:1", tc.opts)
			if !tc.is(err) {
				t.Errorf("got %v", err)
			}
			if _, err := is.Get(ctx, "example.com/out:1"); !errdefs.IsNotFound(err) {
				t.Errorf("failed conversion left an image: %v", err)
			}
		})
	}
}

// checkConversionLog: two conversions that succeeded (TestImage's) log no
// failure, at any level, and name the prioritized file each layer lacks:
// the base layer lacks it, the app layer holds it.
func checkConversionLog(t *testing.T, hook *logtest.Hook) {
	t.Helper()
	var missed [][]string
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "failed") || e.Level <= logrus.WarnLevel {
			t.Errorf("a conversion that succeeded logged %s %q (%v)", e.Level, e.Message, e.Data)
		}
		if e.Message == "prioritized files not in layer" {
			files, _ := e.Data["files"].([]string)
			missed = append(missed, files)
		}
	}
	if want := []string{prioritized}; len(missed) == 0 || !slices.ContainsFunc(missed, func(f []string) bool { return slices.Equal(f, want) }) {
		t.Errorf("logged missed prioritized files %v, want %v for the base layer", missed, want)
	}
	for _, f := range missed {
		if len(f) == 0 {
			t.Errorf("logged an empty list of missed prioritized files")
		}
	}
}

// stripUncompressedLabels removes the uncompressed label of every blob in
// cs that has one, and returns their digests.
func stripUncompressedLabels(ctx context.Context, t *testing.T, cs content.Store) []digest.Digest {
	t.Helper()
	var ds []digest.Digest
	if err := cs.Walk(ctx, func(info content.Info) error {
		if info.Labels[labels.LabelUncompressed] != "" {
			ds = append(ds, info.Digest)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if _, err := cs.Update(ctx, content.Info{Digest: d}, "labels."+labels.LabelUncompressed); err != nil {
			t.Fatal(err)
		}
	}
	return ds
}
