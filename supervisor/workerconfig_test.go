package supervisor

import (
	"context"
	"os"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/layout"
)

func workerConfigOptions(t *testing.T) Options {
	root, run := t.TempDir(), t.TempDir()
	return Options{
		Root: root, RunDir: run, LogDir: t.TempDir(), Binary: "/bin/false", Mode: PerImage,
		// No standby: nothing is started.
		RecoverPolicy: Remount,
		Worker: daemonapi.WorkerConfig{
			Version: daemonapi.WorkerConfigVersion, Root: root, RunDir: run, LogLevel: "info", FuseReaders: 2,
			TOC: daemonapi.TOCLimits{MaxCompressedSize: 1, MaxSize: 1, MaxEntries: 1},
		},
	}
}

// TestNewWritesTheWorkerConfig guards what New does with the workers'
// configuration: it writes it where every worker reads it (0600), with
// exit_when_idle forced on in per-image mode, and refuses one that is
// invalid or whose root or run dir is not the supervisor's.
func TestNewWritesTheWorkerConfig(t *testing.T) {
	ctx := context.Background()
	opts := workerConfigOptions(t)
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx, false); err != nil {
		t.Fatal(err)
	}
	path := layout.RunDir(opts.RunDir).WorkerConfig()
	got, err := daemonapi.ReadWorkerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := opts.Worker
	want.ExitWhenIdle = true
	if got != want {
		t.Errorf("worker config file holds %+v, want %+v", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("worker config file: %v, %v; want mode 0600", fi, err)
	}

	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"invalid", func(o *Options) { o.Worker.FuseReaders = 0 }},
		{"another root", func(o *Options) { o.Worker.Root = t.TempDir() }},
		{"another run dir", func(o *Options) { o.Worker.RunDir = t.TempDir() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := workerConfigOptions(t)
			tc.edit(&opts)
			if s, err := New(ctx, opts); !errdefs.IsInvalidArgument(err) {
				if err == nil {
					s.Close(ctx, false)
				}
				t.Fatalf("New = %v, want invalid argument", err)
			}
		})
	}
}
