package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/daemonapi"
)

// A workers.binary that cannot run fails the start, naming the key.
func TestWorkerBinaryChecked(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "lazyfsd"), filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"executable", exe, ""},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"a directory", dir, "not a regular file"},
		{"not executable", plain, "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := workerBinary(tc.path)
			if tc.want == "" {
				if err != nil || got != tc.path {
					t.Fatalf("workerBinary(%s) = %q, %v; want it back", tc.path, got, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "workers.binary: ") || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("workerBinary(%s): %v; want an invalid-argument error naming workers.binary and %q", tc.path, err, tc.want)
			}
		})
	}
}

// The workers' configuration is built from the snapshotter's in one place:
// every setting reaches it, and the defaults make a config a worker accepts.
func TestWorkerConfigFromConfig(t *testing.T) {
	cfg := config.Default()
	wc := workerConfig(cfg)
	if err := wc.Validate(); err != nil {
		t.Fatalf("worker config of the default config: %v", err)
	}
	if wc.CacheDir != "" && cfg.Cache.Size == 0 {
		t.Errorf("cache dir %q although the cache is off", wc.CacheDir)
	}
	cfg.Root, cfg.RunDir, cfg.LogLevel = "/r", "/run/x", "debug"
	cfg.Registry.ConfigPath = "/hosts"
	cfg.Workers.FuseReaders = 7
	cfg.Workers.IdleTimeout = config.Duration(3 * time.Second)
	cfg.Layers.MemoryCacheSize = 5
	cfg.Layers.MaxTOCCompressedSize, cfg.Layers.MaxTOCSize, cfg.Layers.MaxEntries = 11, 12, 13
	cfg.Cache.Size = 1
	cfg.Registry.DockerConfig = "/etc/lazyfs/auth.json"
	cfg.Registry.ReadTimeout = config.Duration(7 * time.Second)
	cfg.Fetch = config.FetchConfig{Concurrency: 3, Prefetch: false, BackgroundConcurrency: 4, BackgroundRate: 6}
	want := daemonapi.WorkerConfig{
		Version: daemonapi.WorkerConfigVersion, Root: "/r", RunDir: "/run/x", LogLevel: "debug", HostsDir: "/hosts",
		FuseReaders: 7, MemoryCacheSize: 5, CacheDir: cfg.CacheDir(),
		TOC:          daemonapi.TOCLimits{MaxCompressedSize: 11, MaxSize: 12, MaxEntries: 13},
		ExitWhenIdle: true, IdleTimeout: daemonapi.Duration(3 * time.Second),
		DockerConfig: "/etc/lazyfs/auth.json", ReadTimeout: daemonapi.Duration(7 * time.Second),
		Fetch: daemonapi.FetchConfig{Concurrency: 3, Prefetch: false, BackgroundConcurrency: 4, BackgroundRate: 6},
	}
	if got := workerConfig(cfg); got != want {
		t.Errorf("workerConfig = %+v\nwant %+v", got, want)
	}
}
