package main

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/opencontainers/go-digest"

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

// compressionLevel of the eStargz layers: the fastest, since the
// benchmark converts 300,000 files.
const compressionLevel = gzip.BestSpeed

// convertMemoryLimit is the heap the conversion may grow to before the
// garbage collector runs. estargz.Build allocates and drops about 1 MiB per
// file (a gzip writer each); with the default GC percentage the collections
// it triggers rescan a heap that grows with the TOC, which doubled the
// conversion time of the 300,000-entry layer here (280 s against 136 s).
const convertMemoryLimit = 2 << 30

// benchImages is what prepare left in the registry.
type benchImages struct {
	bigSHA256   [sha256.Size]byte
	manyEntries int
}

// ref returns the reference of repo:tag on host ("127.0.0.1:port").
func ref(host, repo, tag string) string { return host + "/" + repo + ":" + tag }

// prepare builds both images (the many-entry one only when entries > 0), pushes the originals, and pushes their
// eStargz conversions: from the cache when it holds them, else converted
// with a throw-away containerd (and then cached). Nothing it does is
// measured.
func prepare(ctx context.Context, env harness.Env, work string, reg *harness.Registry, cache conversionCache, entries int) (benchImages, error) {
	start := time.Now()
	base, err := debianRootfs(ctx, cache.dir, work)
	if err != nil {
		return benchImages{}, err
	}
	progress("building the app image (Debian %s minbase, %d small files, random files of %d MiB and %d × %d MiB)",
		debianSuite, smallDirs*smallPerDir, bigFileSize>>20, mediumFiles, mediumFileSize>>20)
	app, err := newAppImage(base)
	if err != nil {
		return benchImages{}, err
	}
	layout := filepath.Join(work, "layout")
	appDesc, err := harness.WriteOCILayout(layout, "app", app.layers)
	if err != nil {
		return benchImages{}, err
	}
	progress("building the many-entry image (%d entries in one layer)", entries)
	manyDesc, err := harness.WriteOCILayout(layout, "many", []harness.Layer{manyEntryLayer(entries)})
	if err != nil {
		return benchImages{}, err
	}

	var conv converter
	defer conv.close()
	for _, img := range []struct {
		tag, repo string
		manifest  digest.Digest
	}{{"app", appRepo, appDesc.Digest}, {"many", manyRepo, manyDesc.Digest}} {
		orig, lazy := ref(reg.Addr(), img.repo, origTag), ref(reg.Addr(), img.repo, lazyTag)
		if err := harness.Push(ctx, layout, img.tag, orig); err != nil {
			return benchImages{}, err
		}
		key, err := cache.key(env.RepoRoot, img.manifest, compressionLevel)
		if err != nil {
			return benchImages{}, err
		}
		if dir := cache.lookup(key); dir != "" {
			err := harness.Push(ctx, dir, lazyTag, lazy)
			if err == nil {
				progress("pushed the cached eStargz conversion of %s (%s)", img.repo, dir)
				continue
			}
			if ctx.Err() != nil {
				return benchImages{}, err
			}
			progress("warning: cached conversion %s is unusable, converting again: %v", dir, err)
			if err := cache.forget(key); err != nil {
				return benchImages{}, err
			}
		}
		progress("converting %s to eStargz (slow for many entries: estargz allocates a gzip writer per file)", img.repo)
		if err := conv.convert(ctx, env, orig, lazy); err != nil {
			return benchImages{}, err
		}
		if err := cache.store(ctx, conv.cl, lazy, key); err != nil {
			progress("warning: failed to cache the conversion: %v", err)
		}
	}
	if entries > 0 {
		// Not for -background, which measures the plain image only.
		if err := prepareOptimized(ctx, env, work, reg, cache, appDesc.Digest, ref(reg.Addr(), appRepo, lazyTag)); err != nil {
			return benchImages{}, err
		}
	}
	progress("images ready in %s", time.Since(start).Round(100*time.Millisecond))
	return benchImages{bigSHA256: app.bigSHA256, manyEntries: entries}, nil
}

// converter runs convert.Image in a containerd of its own, started on first
// use.
type converter struct {
	ctrd *harness.Containerd
	cl   *client.Client
}

func (c *converter) convert(ctx context.Context, env harness.Env, orig, lazy string) error {
	if c.ctrd == nil {
		ctrd, err := harness.StartContainerd(ctx, harness.ContainerdOptions{Env: env, Version: harness.V2})
		if err != nil {
			return err
		}
		c.ctrd = ctrd
		if c.cl, err = ctrd.Client(ctx); err != nil {
			return err
		}
	}
	// Fetch, not pull: the conversion needs the blobs, not an unpacked
	// rootfs of 300,000 files.
	if _, err := c.ctrd.Ctr(ctx, "content", "fetch", "--plain-http", orig); err != nil {
		return err
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(convertMemoryLimit))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	if _, err := convert.Image(ctx, c.cl, orig, lazy, convert.Options{CompressionLevel: compressionLevel}); err != nil {
		return err
	}
	_, err := c.ctrd.Ctr(ctx, "image", "push", "--plain-http", lazy)
	return err
}

func (c *converter) close() {
	if c.ctrd == nil {
		return
	}
	if err := c.ctrd.Close(); err != nil {
		progress("warning: teardown of the conversion containerd: %v", err)
	}
}
