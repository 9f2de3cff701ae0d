package main

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"path/filepath"
	"time"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// Repositories and tags in the registry. Runs pull them through the
// counting proxy, under the proxy's address.
const (
	appRepo  = "bench/app"
	manyRepo = "bench/many"
	origTag  = "orig"
	lazyTag  = "estargz"
)

// images is what prepare left in the registry.
type images struct {
	bigSHA256   [sha256.Size]byte
	manyEntries int
}

// ref returns the reference of repo:tag on host ("127.0.0.1:port").
func ref(host, repo, tag string) string { return host + "/" + repo + ":" + tag }

// prepare builds both images, pushes the originals, converts them to
// eStargz with a throw-away containerd and pushes the results. Nothing it
// does is measured.
func prepare(ctx context.Context, env harness.Env, busybox, work string, reg *harness.Registry, entries int) (images, error) {
	start := time.Now()
	progress("building the app image (busybox, %d small files, a %d MiB random file)", smallDirs*smallPerDir, bigFileSize>>20)
	app, err := newAppImage(busybox)
	if err != nil {
		return images{}, err
	}
	layout := filepath.Join(work, "layout")
	if _, err := harness.WriteOCILayout(layout, "app", app.layers); err != nil {
		return images{}, err
	}
	progress("building the many-entry image (%d entries in one layer)", entries)
	if _, err := harness.WriteOCILayout(layout, "many", []harness.Layer{manyEntryLayer(entries)}); err != nil {
		return images{}, err
	}
	for tag, repo := range map[string]string{"app": appRepo, "many": manyRepo} {
		if err := harness.Push(ctx, layout, tag, ref(reg.Addr(), repo, origTag)); err != nil {
			return images{}, err
		}
	}

	progress("converting both images to eStargz with a separate containerd")
	ctrd, err := harness.StartContainerd(ctx, harness.ContainerdOptions{Env: env, Version: harness.V2})
	if err != nil {
		return images{}, err
	}
	defer func() {
		if cerr := ctrd.Close(); cerr != nil {
			progress("warning: teardown of the conversion containerd: %v", cerr)
		}
	}()
	cl, err := ctrd.Client(ctx)
	if err != nil {
		return images{}, err
	}
	for _, repo := range []string{appRepo, manyRepo} {
		orig, lazy := ref(reg.Addr(), repo, origTag), ref(reg.Addr(), repo, lazyTag)
		// Fetch, not pull: the conversion needs the blobs, not an unpacked
		// rootfs of 300,000 files.
		if _, err := ctrd.Ctr(ctx, "content", "fetch", "--plain-http", orig); err != nil {
			return images{}, err
		}
		if _, err := convert.Image(ctx, cl, orig, lazy, convert.Options{CompressionLevel: gzip.BestSpeed}); err != nil {
			return images{}, err
		}
		if _, err := ctrd.Ctr(ctx, "image", "push", "--plain-http", lazy); err != nil {
			return images{}, err
		}
	}
	progress("images ready in %s", time.Since(start).Round(100*time.Millisecond))
	return images{bigSHA256: app.bigSHA256, manyEntries: entries}, nil
}
