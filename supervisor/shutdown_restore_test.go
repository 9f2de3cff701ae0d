package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/layer"
)

// shutdownBound is what a stop may take (issue 10: exit within 10 s).
const shutdownBound = 10 * time.Second

// gatedBinary is a worker binary that, once dir/gate exists, waits for
// dir/go before it becomes lazyfsd: a spawn that a test holds mid-start.
// It creates dir/started when it begins to wait.
func gatedBinary(t *testing.T, dir string) string {
	t.Helper()
	script := filepath.Join(dir, "lazyfsd-gated")
	body := fmt.Sprintf(`#!/bin/sh
if [ -e %[1]s/gate ]; then
	touch %[1]s/started
	while [ ! -e %[1]s/go ]; do sleep 0.01; done
fi
exec %[2]s "$@"
`, dir, lazyfsdBinary(t))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A SIGTERM right after a start, while layers of the last run are still
// being mounted again, must not keep the snapshotter from exiting. The bug
// (issue 10): Shutdown took its list of workers and went on while a
// restore's spawn was under way; the worker that spawn started afterwards
// was never stopped, the restore's mount through it was left, and Shutdown
// waited forever for that worker's log copier. Shutdown now ends the
// restores before it lists the workers.
//
// To hold Shutdown between its list and its end, the test holds the lock of
// a worker in that list (as a slow stop of that worker would); the restore's
// worker is held mid-start by a gated binary until Shutdown has begun.
func TestShutdownDuringRestore(t *testing.T) {
	e := newEnv(t, PerImage)
	gate := t.TempDir()
	e.opts.Binary = gatedBinary(t, gate)
	// No standby: it would spare the restore's spawn the gated start.
	e.opts.RecoverPolicy = Remount
	s := e.supervisor()
	mpA, mpB := e.mountpoint("a"), e.mountpoint("b")
	s.mount("a", mpA, e.layer(0, "v1"))
	pidA := s.pids()[e.workerID("v1")]

	touch(t, filepath.Join(gate, "gate"))
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := s.Restore(ctx, "b", mpB, e.layer(1, "v2")); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	eventually(t, "the restore's worker starting", func() bool {
		_, err := os.Stat(filepath.Join(gate, "started"))
		return err == nil
	})

	unlockA := s.idLocks.lock(e.workerID("v1"))
	locked := true
	defer func() {
		if locked {
			unlockA()
		}
	}()
	s.closed = true
	done := make(chan error, 1)
	go func() {
		_, err := s.Shutdown(e.ctx, KeepBusy)
		done <- err
	}()
	eventually(t, "Shutdown begun", s.isClosing)
	// The restore's worker may start now; the restore must not mount
	// through it once Shutdown has begun.
	touch(t, filepath.Join(gate, "go"))
	wctx, wcancel := context.WithTimeout(e.ctx, shutdownBound)
	defer wcancel()
	restoreErr := s.Wait(wctx, []string{"b"})
	unlockA()
	locked = false

	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(shutdownBound):
		t.Fatalf("Shutdown did not return within %v of a restore under way (the restore ended with %v)", shutdownBound, restoreErr)
	}
	if restoreErr == nil {
		t.Error("the restore mounted its layer after Shutdown began")
	}
	for _, mp := range []string{mpA, mpB} {
		if mounted(t, mp) {
			t.Errorf("%s still mounted after Shutdown", mp)
		}
	}
	waitGone(t, pidA)
	if pids := workerPIDs(e.opts.RunDir); len(pids) != 0 {
		t.Errorf("workers %v left running after Shutdown", pids)
	}
}

// TestRestoreAfterCloseIsRefused guards goRestore's check: once Close (or
// Shutdown) has begun, nothing may start mounting a layer again behind its
// back; Restore says so at once, and waiting for the layer reports it.
func TestRestoreAfterCloseIsRefused(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, workerConfigOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx, false); err != nil {
		t.Fatal(err)
	}
	l := layer.Layer{ImageRef: "r/img:v1", LayerDigest: digest.FromString("blob"), TOCDigest: digest.FromString("toc")}
	if err := s.Restore(ctx, "m1", t.TempDir(), l); !errdefs.IsUnavailable(err) {
		t.Fatalf("Restore after Close = %v, want unavailable", err)
	}
	if err := s.Wait(ctx, []string{"m1"}); !errdefs.IsUnavailable(err) {
		t.Fatalf("Wait for a layer refused by Restore = %v, want unavailable", err)
	}
}

// A SIGTERM while a takeover is under way must keep the successor serving
// a layer a container uses. The bug: Shutdown listed the workers while the
// takeover of a dead one was starting its successor; the successor,
// installed after the list, was never looked at: not kept for the next
// snapshotter, it ended with this one and the container's layer was left
// without a server. Shutdown now waits for deaths being handled before it
// lists the workers.
//
// The successor is held mid-start by a gated binary (the standby, which
// would start it in a few milliseconds, is taken away first) until
// Shutdown has begun. A bind mount of the layer stands for the container.
func TestShutdownDuringTakeover(t *testing.T) {
	e := newEnv(t, PerImage)
	gate := t.TempDir()
	e.opts.Binary = gatedBinary(t, gate)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	view := t.TempDir()
	if err := unix.Mount(mp, view, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(view, unix.MNT_DETACH) })
	id := e.workerID("v1")
	dead := s.current(id)
	eventually(t, "a standby worker", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.standby != nil
	})
	// Its replacement comes a second after it ends, long after the spawn
	// below.
	s.stopStandby()
	touch(t, filepath.Join(gate, "gate"))

	if err := e.kill(dead.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the successor starting", func() bool {
		_, err := os.Stat(filepath.Join(gate, "started"))
		return err == nil
	})
	s.closed = true
	type result struct {
		kept []KeptWorker
		err  error
	}
	done := make(chan result, 1)
	go func() {
		kept, err := s.Shutdown(e.ctx, KeepBusy)
		done <- result{kept, err}
	}()
	eventually(t, "Shutdown begun", s.isClosing)
	touch(t, filepath.Join(gate, "go"))

	var r result
	select {
	case r = <-done:
	case <-time.After(shutdownBound):
		t.Fatalf("Shutdown did not return within %v of a takeover under way", shutdownBound)
	}
	if r.err != nil {
		t.Errorf("Shutdown: %v", r.err)
	}
	if len(r.kept) != 1 || r.kept[0].ID != id || r.kept[0].PID == dead.pid || processGone(r.kept[0].PID) {
		t.Fatalf("Shutdown kept %+v; want the successor of %s (not pid %d), running", r.kept, id, dead.pid)
	}
	within(t, "read the used layer after Shutdown", func() {
		got, err := fusetest.ReadFile(filepath.Join(view, "usr/share/a.conf"))
		if err != nil || !bytes.Equal(got, e.layers[0].Files["usr/share/a.conf"]) {
			t.Errorf("read of a used layer after Shutdown: %d bytes, %v", len(got), err)
		}
	})
}
