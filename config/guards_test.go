package config_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/config"
)

// TestValidateBounds pins every bound of Validate at its edge: the value at
// the limit passes and the next one is refused under its own key.
func TestValidateBounds(t *testing.T) {
	// The longest worker socket under run_dir is
	// "/workers/img-0123456789abcdef/control.sock" (42 bytes).
	runDir := func(n int) string { return "/" + strings.Repeat("r", n-1) }
	for _, tc := range []struct {
		name string
		edit func(c *config.Config)
		key  string // "" means valid
	}{
		{"two FUSE readers", func(c *config.Config) { c.Workers.FuseReaders = 2 }, ""},
		{"one FUSE reader", func(c *config.Config) { c.Workers.FuseReaders = 1 }, "workers.fuse_readers"},
		{"1024 FUSE readers", func(c *config.Config) { c.Workers.FuseReaders = 1024 }, ""},
		{"1025 FUSE readers", func(c *config.Config) { c.Workers.FuseReaders = 1025 }, "workers.fuse_readers"},
		{"ready timeout of 1ns", func(c *config.Config) { c.Workers.ReadyTimeout = 1 }, ""},
		{"ready timeout of 0", func(c *config.Config) { c.Workers.ReadyTimeout = 0 }, "workers.ready_timeout"},
		{"one entry", func(c *config.Config) { c.Layers.MaxEntries = 1 }, ""},
		{"no entries", func(c *config.Config) { c.Layers.MaxEntries = 0 }, "layers.max_entries"},
		{"compressed TOC of 1 byte", func(c *config.Config) { c.Layers.MaxTOCCompressedSize = 1 }, ""},
		{"compressed TOC of 0 bytes", func(c *config.Config) { c.Layers.MaxTOCCompressedSize = 0 }, "layers.max_toc_compressed_size"},
		{"TOC of 1 byte", func(c *config.Config) { c.Layers.MaxTOCSize = 1 }, ""},
		{"TOC of 0 bytes", func(c *config.Config) { c.Layers.MaxTOCSize = 0 }, "layers.max_toc_size"},
		{"memory cache of 1 byte", func(c *config.Config) { c.Layers.MemoryCacheSize = 1 }, ""},
		{"memory cache of -1 bytes", func(c *config.Config) { c.Layers.MemoryCacheSize = -1 }, "layers.memory_cache_size"},
		{"fetch concurrency 1", func(c *config.Config) { c.Fetch.Concurrency = 1 }, ""},
		{"fetch concurrency 0", func(c *config.Config) { c.Fetch.Concurrency = 0 }, "fetch.concurrency"},
		{"fetch concurrency 1024", func(c *config.Config) { c.Fetch.Concurrency = 1024 }, ""},
		{"fetch concurrency 1025", func(c *config.Config) { c.Fetch.Concurrency = 1025 }, "fetch.concurrency"},
		{"background concurrency 1", func(c *config.Config) { c.Fetch.BackgroundConcurrency = 1 }, ""},
		{"background concurrency 0", func(c *config.Config) { c.Fetch.BackgroundConcurrency = 0 }, "fetch.background_concurrency"},
		{"background concurrency 1024", func(c *config.Config) { c.Fetch.BackgroundConcurrency = 1024 }, ""},
		{"background concurrency 1025", func(c *config.Config) { c.Fetch.BackgroundConcurrency = 1025 }, "fetch.background_concurrency"},
		{"background rate 0", func(c *config.Config) { c.Fetch.BackgroundRate = 0 }, ""},
		{"background rate -1", func(c *config.Config) { c.Fetch.BackgroundRate = -1 }, "fetch.background_rate"},
		{"address of 107 bytes", func(c *config.Config) { c.Address = "/" + strings.Repeat("a", 106) }, ""},
		{"address of 108 bytes", func(c *config.Config) { c.Address = "/" + strings.Repeat("a", 107) }, "address"},
		{"relative address", func(c *config.Config) { c.Address = "snapshotter.sock" }, "address"},
		{"run_dir at the limit", func(c *config.Config) { c.RunDir = runDir(107 - 42) }, ""},
		{"run_dir over the limit", func(c *config.Config) { c.RunDir = runDir(107 - 41) }, "run_dir"},
		{"debug port 1", func(c *config.Config) { c.Debug.Address = "127.0.0.1:1" }, ""},
		{"debug port 65535 on every address", func(c *config.Config) { c.Debug.Address = ":65535" }, ""},
		{"debug port 0", func(c *config.Config) { c.Debug.Address = "127.0.0.1:0" }, "debug.address"},
		{"debug port 65536", func(c *config.Config) { c.Debug.Address = "127.0.0.1:65536" }, "debug.address"},
		{"debug address without port", func(c *config.Config) { c.Debug.Address = "127.0.0.1" }, "debug.address"},
		{"debug port by name", func(c *config.Config) { c.Debug.Address = "127.0.0.1:http" }, "debug.address"},
		{"absolute worker binary", func(c *config.Config) { c.Workers.Binary = "/usr/bin/lazyfsd" }, ""},
		{"relative worker binary", func(c *config.Config) { c.Workers.Binary = "bin/lazyfsd" }, "workers.binary"},
		{"absolute docker config", func(c *config.Config) { c.Registry.DockerConfig = "/root/.docker" }, ""},
		{"read timeout 1ns", func(c *config.Config) { c.Registry.ReadTimeout = 1 }, ""},
		{"read timeout 0", func(c *config.Config) { c.Registry.ReadTimeout = 0 }, "registry.read_timeout"},
		{"read timeout at the limit", func(c *config.Config) { c.Registry.ReadTimeout = config.MaxReadTimeout }, ""},
		{"read timeout over the limit", func(c *config.Config) { c.Registry.ReadTimeout = config.MaxReadTimeout + 1 }, "registry.read_timeout"},
		{"relative docker config", func(c *config.Config) { c.Registry.DockerConfig = ".docker" }, "registry.docker_config"},
		{"shared workers", func(c *config.Config) { c.Workers.Mode = config.WorkersShared }, ""},
		{"unknown worker mode", func(c *config.Config) { c.Workers.Mode = "per_layer" }, "workers.mode"},
		{"debug log level", func(c *config.Config) { c.LogLevel = "debug" }, ""},
		{"unknown log level", func(c *config.Config) { c.LogLevel = "loud" }, "log_level"},
		{"relative log dir", func(c *config.Config) { c.LogDir = "log" }, "log_dir"},
		{"relative hosts dir", func(c *config.Config) { c.Registry.ConfigPath = "certs.d" }, "registry.config_path"},
		{"verify before use", func(c *config.Config) { c.Layers.Verify = config.VerifyBeforeUse }, ""},
		{"verify in the background", func(c *config.Config) { c.Layers.Verify = config.VerifyBackground }, ""},
		{"unknown verify mode", func(c *config.Config) { c.Layers.Verify = "never" }, "layers.verify"},
		{"no background proofs", func(c *config.Config) { c.Layers.ProofConcurrency = 0 }, ""},
		{"-1 background proofs", func(c *config.Config) { c.Layers.ProofConcurrency = -1 }, "layers.proof_concurrency"},
		{"64 background proofs", func(c *config.Config) { c.Layers.ProofConcurrency = 64 }, ""},
		{"65 background proofs", func(c *config.Config) { c.Layers.ProofConcurrency = 65 }, "layers.proof_concurrency"},
		{"no containerd address", func(c *config.Config) { c.Containerd.Address = "" }, ""},
		{"relative containerd address", func(c *config.Config) { c.Containerd.Address = "containerd.sock" }, "containerd.address"},
		{"no snapshotter name", func(c *config.Config) { c.Containerd.Snapshotter = "" }, "containerd.snapshotter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.edit(&c)
			err := c.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0].Key != tc.key {
				t.Fatalf("Validate() = %v, want one problem with %s", err, tc.key)
			}
		})
	}
}

// TestByteSizeOverflowEdge pins the overflow check of a size with a unit:
// the largest number of KiB that fits in int64 bytes parses, one more does
// not.
func TestByteSizeOverflowEdge(t *testing.T) {
	const maxKiB = math.MaxInt64 / 1024
	var b config.ByteSize
	if err := b.UnmarshalText([]byte(strconv.FormatInt(maxKiB, 10) + "KiB")); err != nil || int64(b) != maxKiB*1024 {
		t.Errorf("%dKiB = %d, %v", int64(maxKiB), b, err)
	}
	if err := b.UnmarshalText([]byte(strconv.FormatInt(maxKiB+1, 10) + "KiB")); err == nil {
		t.Errorf("%dKiB accepted", int64(maxKiB+1))
	}
}
