package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// stack is one run's snapshotter and containerd. Each run gets a fresh one,
// so that nothing of an earlier run (TOCs kept on disk, snapshots, content,
// a worker's memory) makes a later run warmer. The registry and its proxy
// outlive the runs.
type stack struct {
	sn    *harness.Snapshotter
	ctrd  *harness.Containerd
	cl    *client.Client
	proxy *harness.Proxy
	// peer is stargz-snapshotter on a stargz stack (sn is nil there).
	peer *harness.Stargz
	// dir holds the run's rootfs views.
	dir string
}

// startStack starts lazyfs-snapshotter and containerd 2.3.7 with lazyfs as
// a proxy plugin. stop holds their teardown even when starting fails, and
// the stack is returned as far as it started, so that its logs can be shown.
// config is merged over the harness's snapshotter config (nil: defaults).
func startStack(ctx context.Context, env harness.Env, proxy *harness.Proxy, dir string, config map[string]any, stop *harness.Closers) (_ *stack, err error) {
	return startStackOpts(ctx, harness.SnapshotterOptions{Env: env, Config: config}, proxy, dir, stop)
}

// startStackOpts is startStack with the snapshotter's options.
func startStackOpts(ctx context.Context, snOpts harness.SnapshotterOptions, proxy *harness.Proxy, dir string, stop *harness.Closers) (_ *stack, err error) {
	env := snOpts.Env
	s := &stack{proxy: proxy, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, fmt.Errorf("failed to create run dir: %w", err)
	}
	stop.Add(func() error { return os.RemoveAll(dir) })
	if s.sn, err = harness.StartSnapshotter(ctx, snOpts); err != nil {
		return s, err
	}
	stop.Add(s.sn.Close)
	s.ctrd, err = harness.StartContainerd(ctx, harness.ContainerdOptions{
		Env: env, Version: harness.V2, LazyfsAddress: s.sn.Address(), LazyfsRoot: s.sn.Root(),
	})
	if err != nil {
		return s, err
	}
	stop.Add(s.ctrd.Close)
	// As on a node, the snapshotter can ask containerd which images reach
	// a layer: without it, every container would wait for the proofs
	// (the whole blobs) of its lazy layers ([layers] verify).
	if err := s.sn.UseContainerd(s.ctrd.Address()); err != nil {
		return s, err
	}
	s.cl, err = s.ctrd.Client(ctx)
	return s, err
}

// withStack starts a stack with start, runs f on it and tears it down.
// When starting or f fails (not an interrupt), the stack's logs are printed
// before the teardown removes them.
func withStack(ctx context.Context, start func(stop *harness.Closers) (*stack, error), f func(st *stack) error) error {
	var stop harness.Closers
	defer stop.Close()
	st, err := start(&stop)
	if err == nil {
		err = f(st)
	}
	if err != nil && ctx.Err() == nil && st != nil {
		harness.PrintLogs(os.Stderr, st.logs())
	}
	return err
}

// quietConfig is lazyfs with no background fetching at all: no prefetch of
// prioritized files and no background proof (whose whole-blob download is
// the background fetch). What the registry serves is then what the pull
// and the first command need.
var quietConfig = map[string]any{
	"fetch":  map[string]any{"prefetch": false},
	"layers": map[string]any{"proof_concurrency": 0},
}

// logs lists the log files of the stack's processes, workers included.
func (s *stack) logs() []string {
	var l []string
	if s.sn != nil {
		l = append(l, s.sn.Logs()...)
	}
	if s.peer != nil {
		l = append(l, s.peer.Logs()...)
	}
	if s.ctrd != nil {
		l = append(l, s.ctrd.Logs()...)
	}
	return l
}

// notableLogLines returns the lines of the snapshotter's and workers' logs
// that a reader of the results must see: fallbacks to ordinary unpack,
// errors and panics. They become findings of the run.
func (s *stack) notableLogLines() []string {
	const maxLines, maxLen = 20, 400
	var out []string
	for _, p := range s.sn.Logs() {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() && len(out) < maxLines {
			line := sc.Text()
			if strings.Contains(line, "falling back") || strings.Contains(line, "level=error") ||
				strings.Contains(line, "level=fatal") || strings.Contains(line, "panic:") {
				if len(line) > maxLen {
					line = line[:maxLen] + "…"
				}
				out = append(out, filepath.Base(p)+": "+line)
			}
		}
		f.Close()
	}
	return out
}

// printLogs prints the end of each log file to stderr.
// copyLogs copies log files into dir, named after the directory holding
// each (the harness names them after the process, workers after their id).
func copyLogs(paths []string, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("failed to create log dir: %w", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		name := filepath.Base(p)
		if name != "snapshotter.log" && name != "containerd.log" {
			name = "worker-" + name
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("failed to copy log %s: %w", p, err)
		}
	}
	return nil
}
