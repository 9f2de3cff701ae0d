package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
)

// TestNewDefaults: options left at zero (or negative) get their
// documented defaults: a zero ready timeout would fail every spawn, a zero
// crash-loop count would give up every takeover, a zero health interval
// would panic the ticker. Options that are set are kept.
func TestNewDefaults(t *testing.T) {
	ctx := context.Background()
	// Each option once zero and once negative.
	for _, v := range []time.Duration{0, -1} {
		opts := workerConfigOptions(t)
		opts.Mode, opts.RecoverPolicy = "", ""
		opts.ReadyTimeout, opts.CrashLoopCount, opts.CrashLoopWindow = v, int(v), -1-v
		opts.RestartBackoff, opts.HealthInterval, opts.HungTimeout = v, -1-v, v
		opts.Binary = "/nonexistent/lazyfsd" // the standby cannot start: nothing runs
		s, err := New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		got := s.opts
		s.Close(ctx, false)
		if got.Mode != PerImage || got.RecoverPolicy != Failover || got.ReadyTimeout != 10*time.Second ||
			got.CrashLoopCount != 5 || got.CrashLoopWindow != 10*time.Second || got.RestartBackoff != 100*time.Millisecond ||
			got.HealthInterval != 10*time.Second || got.HungTimeout != 10*time.Second || !got.Worker.ExitWhenIdle {
			t.Errorf("defaults: %+v", got)
		}
	}

	set := workerConfigOptions(t)
	set.Mode, set.RecoverPolicy = Shared, Remount
	set.ReadyTimeout, set.CrashLoopCount, set.CrashLoopWindow = time.Second, 1, time.Minute
	set.RestartBackoff, set.HealthInterval, set.HungTimeout = time.Millisecond, time.Hour, 2*time.Second
	s, err := New(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	got := s.opts
	s.Close(ctx, false)
	if got.Mode != Shared || got.RecoverPolicy != Remount || got.ReadyTimeout != time.Second ||
		got.CrashLoopCount != 1 || got.CrashLoopWindow != time.Minute || got.RestartBackoff != time.Millisecond ||
		got.HealthInterval != time.Hour || got.HungTimeout != 2*time.Second || got.Worker.ExitWhenIdle {
		t.Errorf("set options not kept (a shared worker does not exit when idle): %+v", got)
	}
}

// TestMountAfterCloseIsRefused: once the supervisor closes, Mount spawns
// no worker and says why.
func TestMountAfterCloseIsRefused(t *testing.T) {
	ctx := context.Background()
	opts := workerConfigOptions(t)
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close(ctx, false)
	l := layer.Layer{ImageRef: "127.0.0.1:5000/a:1", LayerDigest: digest.FromString("l"), TOCDigest: digest.FromString("t")}
	if err := s.Mount(ctx, "m1", t.TempDir(), l); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mount after Close: %v, want unavailable (shutting down)", err)
	}
}
