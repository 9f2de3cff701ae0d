package daemonapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func validWorkerConfig() WorkerConfig {
	return WorkerConfig{
		Version:         WorkerConfigVersion,
		Root:            "/var/lib/lazyfs",
		RunDir:          "/run/lazyfs",
		LogLevel:        "info",
		HostsDir:        "/etc/containerd/certs.d",
		FuseReaders:     4,
		MemoryCacheSize: 64 << 20,
		CacheDir:        "/var/lib/lazyfs/cache",
		TOC:             TOCLimits{MaxCompressedSize: 1, MaxSize: 1, MaxEntries: 1},
		ExitWhenIdle:    true,
		IdleTimeout:     Duration(30 * time.Second),
		Fetch:           FetchConfig{Concurrency: 8, Prefetch: true, BackgroundConcurrency: 2, BackgroundRate: 20 << 20},
	}
}

// TestWorkerConfigValidate guards every check of Validate on its own, each
// bound at its edge: the value at the limit passes, the next is refused as
// an invalid argument naming the field.
func TestWorkerConfigValidate(t *testing.T) {
	if err := validWorkerConfig().Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*WorkerConfig)
		field string // empty: accepted
	}{
		{"no hosts dir", func(c *WorkerConfig) { c.HostsDir = "" }, ""},
		{"no cache dir", func(c *WorkerConfig) { c.CacheDir = "" }, ""},
		{"fewest fuse readers", func(c *WorkerConfig) { c.FuseReaders = MinFuseReaders }, ""},
		{"most fuse readers", func(c *WorkerConfig) { c.FuseReaders = MaxFuseReaders }, ""},
		{"no memory cache", func(c *WorkerConfig) { c.MemoryCacheSize = 0 }, ""},
		{"exit on the last detach", func(c *WorkerConfig) { c.IdleTimeout = 0 }, ""},
		{"default fetch concurrency", func(c *WorkerConfig) { c.Fetch.Concurrency = 0 }, ""},
		{"most fetch concurrency", func(c *WorkerConfig) { c.Fetch.Concurrency = MaxFetchConcurrency }, ""},
		{"too much fetch concurrency", func(c *WorkerConfig) { c.Fetch.Concurrency = MaxFetchConcurrency + 1 }, "fetch.concurrency"},
		{"negative fetch concurrency", func(c *WorkerConfig) { c.Fetch.Concurrency = -1 }, "fetch.concurrency"},
		{"most background concurrency", func(c *WorkerConfig) { c.Fetch.BackgroundConcurrency = MaxFetchConcurrency }, ""},
		{"too much background concurrency", func(c *WorkerConfig) { c.Fetch.BackgroundConcurrency = MaxFetchConcurrency + 1 }, "fetch.background_concurrency"},
		{"negative background concurrency", func(c *WorkerConfig) { c.Fetch.BackgroundConcurrency = -1 }, "fetch.background_concurrency"},
		{"unbounded background rate", func(c *WorkerConfig) { c.Fetch.BackgroundRate = 0 }, ""},
		{"negative background rate", func(c *WorkerConfig) { c.Fetch.BackgroundRate = -1 }, "fetch.background_rate"},
		{"other version", func(c *WorkerConfig) { c.Version = WorkerConfigVersion + 1 }, "version"},
		{"no version", func(c *WorkerConfig) { c.Version = 0 }, "version"},
		{"no root", func(c *WorkerConfig) { c.Root = "" }, "root"},
		{"relative root", func(c *WorkerConfig) { c.Root = "var/lib/lazyfs" }, "root"},
		{"no run dir", func(c *WorkerConfig) { c.RunDir = "" }, "run_dir"},
		{"relative hosts dir", func(c *WorkerConfig) { c.HostsDir = "certs.d" }, "hosts_dir"},
		{"relative cache dir", func(c *WorkerConfig) { c.CacheDir = "cache" }, "cache_dir"},
		{"unknown log level", func(c *WorkerConfig) { c.LogLevel = "verbose" }, "log_level"},
		{"no log level", func(c *WorkerConfig) { c.LogLevel = "" }, "log_level"},
		{"too few fuse readers", func(c *WorkerConfig) { c.FuseReaders = MinFuseReaders - 1 }, "fuse_readers"},
		{"too many fuse readers", func(c *WorkerConfig) { c.FuseReaders = MaxFuseReaders + 1 }, "fuse_readers"},
		{"negative memory cache", func(c *WorkerConfig) { c.MemoryCacheSize = -1 }, "memory_cache_size"},
		{"no compressed toc", func(c *WorkerConfig) { c.TOC.MaxCompressedSize = 0 }, "toc"},
		{"no toc", func(c *WorkerConfig) { c.TOC.MaxSize = 0 }, "toc"},
		{"no toc entries", func(c *WorkerConfig) { c.TOC.MaxEntries = 0 }, "toc"},
		{"negative idle timeout", func(c *WorkerConfig) { c.IdleTimeout = -1 }, "idle_timeout"},
		{"no docker config", func(c *WorkerConfig) { c.DockerConfig = "" }, ""},
		{"absolute docker config", func(c *WorkerConfig) { c.DockerConfig = "/root/.docker/config.json" }, ""},
		{"relative docker config", func(c *WorkerConfig) { c.DockerConfig = ".docker/config.json" }, "docker_config"},
		{"default read timeout", func(c *WorkerConfig) { c.ReadTimeout = 0 }, ""},
		{"shortest read timeout", func(c *WorkerConfig) { c.ReadTimeout = 1 }, ""},
		{"negative read timeout", func(c *WorkerConfig) { c.ReadTimeout = -1 }, "read_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validWorkerConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want invalid argument naming %s", err, tc.field)
			}
		})
	}
}

// TestWorkerConfigFile guards the file's round trip and every refusal of
// DecodeWorkerConfig and ReadWorkerConfig: another version (named as such),
// an unknown field (named), trailing data, a file over the size bound, an
// invalid value, and a file others may write.
func TestWorkerConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	want := validWorkerConfig()
	if err := WriteWorkerConfig(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v, %v; want mode 0600", fi, err)
	}
	got, err := ReadWorkerConfig(path)
	if err != nil || got != want {
		t.Fatalf("ReadWorkerConfig = %+v, %v; want %+v", got, err, want)
	}
	bad := want
	bad.FuseReaders = 0
	if err := WriteWorkerConfig(path, bad); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("WriteWorkerConfig of an invalid config: %v", err)
	}
	if got, _ := ReadWorkerConfig(path); got != want {
		t.Fatal("a refused write replaced the file")
	}

	data, _ := os.ReadFile(path)
	text := string(data)
	for _, tc := range []struct {
		name, doc, says string
	}{
		{"other version", strings.Replace(text, `"version": 1`, `"version": 2`, 1), "version is 2"},
		{"unknown field", strings.Replace(text, `"root"`, `"retry_count": 3, "root"`, 1), "retry_count"},
		{"trailing data", text + "{}", "after top-level value"},
		{"not json", "version = 1", "invalid argument"},
		{"invalid value", strings.Replace(text, `"log_level": "info"`, `"log_level": "loud"`, 1), "log_level"},
		{"bad duration", strings.Replace(text, `"30s"`, `"30 parsecs"`, 1), "30 parsecs"},
		{"too large", text[:len(text)-2] + `, "x": "` + strings.Repeat("a", maxWorkerConfig) + `"}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeWorkerConfig(strings.NewReader(tc.doc))
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("DecodeWorkerConfig = %v, want invalid argument saying %q", err, tc.says)
			}
		})
	}
	// At the size bound exactly: accepted (padded with spaces).
	padded := text + strings.Repeat(" ", maxWorkerConfig-len(text))
	if _, err := DecodeWorkerConfig(strings.NewReader(padded)); err != nil {
		t.Fatalf("config of exactly %d bytes refused: %v", maxWorkerConfig, err)
	}

	for _, mode := range []os.FileMode{0o620, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadWorkerConfig(path); !errdefs.IsPermissionDenied(err) {
			t.Errorf("config file of mode %s: %v, want permission denied", mode, err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWorkerConfig(path); err != nil {
		t.Errorf("config file readable by others, writable by its owner only: %v", err)
	}
	if _, err := ReadWorkerConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v, want not exist", err)
	}
}
