package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// stargzName is the snapshotter name containerd knows stargz-snapshotter by
// in the bench, and stargzVersion the version tests/stargz/go.mod pins.
const (
	stargzName    = "stargz"
	stargzVersion = "v0.18.2"
)

// stargzResult is stargz-snapshotter measured like lazyfs on a stack of
// its own (-stargz): the same image, registry and proxy, its default
// configuration (prefetch and background fetch on).
type stargzResult struct {
	Pull  pullResult  `json:"pull"`
	Read  readResult  `json:"read"`
	Small smallResult `json:"small_files"`
	// Mem is its process's memory after the reads (one process serves
	// every layer; Go heap not reported).
	Mem memStatus `json:"memory_after_reads"`
}

// startStargzStack starts stargz-snapshotter and containerd 2.3.7 with it
// as a proxy plugin; like startStack, stop holds their teardown.
func startStargzStack(ctx context.Context, env harness.Env, proxy *harness.Proxy, dir string, stop *harness.Closers) (_ *stack, err error) {
	s := &stack{proxy: proxy, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, fmt.Errorf("failed to create run dir: %w", err)
	}
	stop.Add(func() error { return os.RemoveAll(dir) })
	if s.peer, err = harness.StartStargz(ctx, env); err != nil {
		return s, err
	}
	stop.Add(s.peer.Close)
	s.ctrd, err = harness.StartContainerd(ctx, harness.ContainerdOptions{
		Env: env, Version: harness.V2,
		Peers: []harness.ProxySnapshotter{{Name: stargzName, Address: s.peer.Address(), Root: s.peer.Root()}},
	})
	if err != nil {
		return s, err
	}
	stop.Add(s.ctrd.Close)
	s.cl, err = s.ctrd.Client(ctx)
	return s, err
}

// stargzRun measures stargz-snapshotter as quietRun measures lazyfs: pull
// + first command, then cold reads of the 64 MiB file (and a warm one) and
// of the small files, then its memory.
func stargzRun(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, ref, dir string, n, of int) (r stargzResult, err error) {
	progress("run %d/%d: stargz-snapshotter %s: lazy pull of %s + first command; cold reads", n, of, stargzVersion, ref)
	err = withStack(ctx, func(stop *harness.Closers) (*stack, error) {
		return startStargzStack(ctx, env, proxy, dir, stop)
	}, func(st *stack) (err error) {
		if r.Pull, err = pullAndRun(ctx, st, ref, stargzName, fmt.Sprintf("bench-stargz-%d", n)); err != nil {
			return err
		}
		if r.Read, err = readBigFile(ctx, st, ref, stargzName, imgs.bigSHA256, true); err != nil {
			return err
		}
		if r.Small, err = readSmallFiles(ctx, st, ref, stargzName); err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(st.peer.Pid()), "status"))
		if err != nil {
			return fmt.Errorf("failed to read stargz's status: %w", err)
		}
		if r.Mem, err = parseMemStatus(data); err != nil {
			return err
		}
		r.Mem.HeapInuseBytes = -1
		progress("    stargz-snapshotter after the reads: %s", r.Mem)
		return nil
	})
	return r, err
}
