package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/config"
)

func TestDefaultIsValid(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

// TestValidateZeroConfig guards the contract that a Config built in code
// without Default is refused key by key rather than run with empty paths.
func TestValidateZeroConfig(t *testing.T) {
	err := config.Config{}.Validate()
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Validate() = %v, want an invalid argument", err)
	}
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error is a %T, not a *config.Error", err)
	}
	var keys []string
	for _, p := range cerr.Problems {
		if p.Line != 0 {
			t.Errorf("problem %q has line %d outside a document", p.Key, p.Line)
		}
		keys = append(keys, p.Key)
	}
	want := []string{
		"root", "address", "run_dir", "log_level", "log_dir", "workers.mode", "workers.fuse_readers",
		"workers.ready_timeout", "workers.recover_policy", "workers.crash_loop_count", "workers.crash_loop_window",
		"workers.restart_backoff", "workers.health_interval", "workers.hung_timeout", "workers.logs.max_size",
		"layers.max_toc_compressed_size", "layers.max_toc_size", "layers.max_entries",
		"layers.memory_cache_size", "layers.proof_wait", "layers.verify", "containerd.snapshotter", "registry.config_path", "registry.read_timeout",
		"fetch.concurrency", "fetch.background_concurrency",
	}
	if len(keys) != len(want) {
		t.Fatalf("problems for %q, want %q", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("problems for %q, want %q", keys, want)
		}
	}
	// Outside a document the message carries neither file nor line.
	if got, want := cerr.Problems[0].Message, `"" is not an absolute path`; got != want {
		t.Errorf("first message %q, want %q", got, want)
	}
	if got := err.Error(); !strings.HasPrefix(got, `root: "" is not an absolute path`+"\n") {
		t.Errorf("message %q does not start with the key", got)
	}
}

// TestRunDirLeavesRoomForWorkerSockets guards against a run_dir under which
// bind(2) of a worker's control socket would fail only at the first pull.
func TestRunDirLeavesRoomForWorkerSockets(t *testing.T) {
	c := config.Default()
	c.RunDir = "/run/" + strings.Repeat("x", 70)
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "run_dir: ") || !strings.Contains(err.Error(), "worker sockets") {
		t.Fatalf("Validate() = %v, want a run_dir problem about worker sockets", err)
	}
}

// TestCacheDir guards that the cache follows root unless placed elsewhere,
// so that --root moves it too.
func TestCacheDir(t *testing.T) {
	c := config.Default()
	c.Root = "/srv/lazyfs"
	if got, want := c.CacheDir(), "/srv/lazyfs/cache"; got != want {
		t.Errorf("CacheDir() = %q, want %q", got, want)
	}
	c.Cache.Dir = "/mnt/fast/lazyfs-cache"
	if got, want := c.CacheDir(), "/mnt/fast/lazyfs-cache"; got != want {
		t.Errorf("CacheDir() with cache.dir = %q, want %q", got, want)
	}
}
