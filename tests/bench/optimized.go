package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// optTag is the app image optimized for the first command: converted
// again by `snapshotterctl image optimize … -- true` with the files that
// command opened (the dynamic linker, libc, true) as prioritized files, so
// that a lazy pull prefetches them first.
const optTag = "optimized"

// firstCommand is what every "pull + first command" runs.
const firstCommand = "true"

// prepareOptimized pushes the optimized app image: from the cache when it
// holds it, else optimized on a lazyfs stack of its own (and then cached).
// src is the original app image's manifest, lazyRef its eStargz conversion
// in the registry.
func prepareOptimized(ctx context.Context, env harness.Env, work string, reg *harness.Registry, cache conversionCache, src digest.Digest, lazyRef string) error {
	key, err := cache.key(env.RepoRoot, src, compressionLevel)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(key + "\noptimized for: " + firstCommand))
	key = hex.EncodeToString(sum[:])[:32]
	optRef := ref(reg.Addr(), appRepo, optTag)
	if dir := cache.lookup(key); dir != "" {
		err := harness.Push(ctx, dir, lazyTag, optRef)
		if err == nil {
			progress("pushed the cached optimized image (%s)", dir)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		progress("warning: cached optimized image %s is unusable, optimizing again: %v", dir, err)
		if err := cache.forget(key); err != nil {
			return err
		}
	}
	progress("optimizing %s for `%s` with snapshotterctl image optimize", lazyRef, firstCommand)
	var stop harness.Closers
	defer stop.Close()
	st, err := startStack(ctx, env, nil, filepath.Join(work, "optimize"), nil, &stop)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, env.Bin("snapshotterctl"), "image", "optimize",
		"--address", st.ctrd.Address(), "--run-dir", st.sn.RunDir(), "--config", st.sn.ConfigPath(),
		"--level", fmt.Sprint(compressionLevel), "--push", lazyRef, optRef, "--", firstCommand).CombinedOutput()
	if err != nil {
		return fmt.Errorf("snapshotterctl image optimize: %w\n%s", err, out)
	}
	if err := cache.store(ctx, st.cl, optRef, key); err != nil {
		progress("warning: failed to cache the optimized image: %v", err)
	}
	return nil
}

// optimizedRun measures the optimized image's pull + first command on a
// fresh lazyfs stack with the default configuration (prefetch on: what
// the optimization is for).
func optimizedRun(ctx context.Context, env harness.Env, proxy *harness.Proxy, dir string, n, of int) (r pullResult, err error) {
	optRef := ref(proxy.Addr(), appRepo, optTag)
	progress("run %d/%d: lazy pull of the optimized image %s + first command", n, of, optRef)
	err = withStack(ctx, func(stop *harness.Closers) (*stack, error) {
		return startStack(ctx, env, proxy, dir, nil, stop)
	}, func(st *stack) (err error) {
		r, err = pullAndRun(ctx, st, optRef, "lazyfs", fmt.Sprintf("bench-opt-%d", n))
		return err
	})
	return r, err
}
