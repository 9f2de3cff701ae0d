package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// smallResult is one cold read of every small file of the image.
type smallResult struct {
	Snapshotter string  `json:"snapshotter"`
	Files       int     `json:"files"`
	Seconds     float64 `json:"seconds"`
	// RegistryBytes and RegistryRequests are what the registry served
	// during the read (blob bodies; GET and HEAD requests).
	RegistryBytes    int64 `json:"registry_bytes"`
	RegistryRequests int   `json:"registry_requests"`
}

// readSmallFiles mounts a view of ref's rootfs from snapshotter, drops the
// page cache and reads every file under smallFilesDir once, in the order a
// directory walk gives (sorted names), as `cat` of a tree does.
func readSmallFiles(ctx context.Context, st *stack, ref, snapshotter string) (_ smallResult, err error) {
	dir := filepath.Join(st.dir, "view-small-"+snapshotter)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return smallResult{}, fmt.Errorf("failed to create view dir: %w", err)
	}
	cleanup, err := harness.MountImageRootfs(ctx, st.cl, ref, snapshotter, dir)
	if err != nil {
		return smallResult{}, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	if err := dropCaches(); err != nil {
		return smallResult{}, err
	}
	st.proxy.Reset()
	r := smallResult{Snapshotter: snapshotter}
	start := time.Now()
	root := filepath.Join(dir, smallFilesDir)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(data) != smallFileSize {
			return fmt.Errorf("wrong bytes: %s has %d bytes, want %d", p, len(data), smallFileSize)
		}
		r.Files++
		return nil
	})
	if err != nil {
		return smallResult{}, fmt.Errorf("failed to read the small files under %s: %w", root, err)
	}
	r.Seconds = time.Since(start).Seconds()
	r.RegistryBytes = st.proxy.TotalBlobBytes()
	r.RegistryRequests = st.proxy.TotalBlobRequests() + st.proxy.TotalBlobHeads()
	if want := smallDirs * smallPerDir; r.Files != want {
		return smallResult{}, fmt.Errorf("found %d small files under %s, want %d", r.Files, root, want)
	}
	progress("    %-9s cold read of %d small files %s, registry served %s in %d requests", snapshotter,
		r.Files, seconds(r.Seconds), mib(r.RegistryBytes), r.RegistryRequests)
	return r, nil
}
