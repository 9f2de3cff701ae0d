package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/internal/fusetest"
)

// pendingNow asserts that Wait reports mount id as still being mounted
// again: a Prepare in this window must not hand out its empty directory.
func (s *testSupervisor) pendingNow(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.e.ctx, 100*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx, []string{id}); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "still being mounted") {
		t.Fatalf("Wait while mount %s is being mounted again: %v, want unavailable (still being mounted)", id, err)
	}
}

// waitMounted waits (bounded) for mount id and returns what Wait said.
func (s *testSupervisor) waitMounted(id string) error {
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	return s.Wait(ctx, []string{id})
}

// readsBack asserts that the layer's file reads whole through mp.
func (e *env) readsBack(t *testing.T, mp string) {
	t.Helper()
	within(t, "read through the mount", func() {
		got, err := fusetest.ReadFile(filepath.Join(mp, "usr/share/a.conf"))
		if err != nil || !bytes.Equal(got, e.layers[0].Files["usr/share/a.conf"]) {
			t.Errorf("read through %s: %d bytes, %v", mp, len(got), err)
		}
	})
}

// TestRemountPolicyMarksPending: with recover_policy remount, a dead
// worker's mount is detached and its layer mounted again through a new
// worker; meanwhile Wait reports it pending (so that Prepare waits instead
// of starting a container on an empty lower dir), and once mounted again
// it is served.
func TestRemountPolicyMarksPending(t *testing.T) {
	e := newEnv(t, PerImage)
	gate := t.TempDir()
	e.opts.Binary = gatedBinary(t, gate)
	e.opts.RecoverPolicy = Remount
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]

	touch(t, filepath.Join(gate, "gate"))
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new worker starting", func() bool {
		_, err := os.Stat(filepath.Join(gate, "started"))
		return err == nil
	})
	if mounted(t, mp) {
		t.Fatal("the dead worker's mount is still attached")
	}
	s.pendingNow(t, "m1")

	touch(t, filepath.Join(gate, "go"))
	if err := s.waitMounted("m1"); err != nil {
		t.Fatalf("Wait after the layer was mounted again: %v", err)
	}
	if !mounted(t, mp) {
		t.Fatal("Wait succeeded, but nothing is mounted")
	}
	if pid := s.pids()[id]; pid == 0 || pid == old {
		t.Fatalf("worker %s: pid %d after the remount, want a new one (old %d)", id, pid, old)
	}
	e.readsBack(t, mp)
}

// failingBinary is a worker binary that exits at once, without a word,
// once dir/fail exists.
func failingBinary(t *testing.T, dir string) string {
	t.Helper()
	script := filepath.Join(dir, "lazyfsd-failing")
	body := fmt.Sprintf("#!/bin/sh\n[ -e %[1]s/fail ] && exit 3\nexec %[2]s \"$@\"\n", dir, lazyfsdBinary(t))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// TestFailedRemountIsReported: a layer that cannot be mounted again after
// its worker died is reported by Wait (a Prepare on it fails clearly),
// never taken for mounted.
func TestFailedRemountIsReported(t *testing.T) {
	e := newEnv(t, PerImage)
	dir := t.TempDir()
	e.opts.Binary = failingBinary(t, dir)
	e.opts.RecoverPolicy = Remount
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	old := s.pids()[e.workerID("v1")]

	touch(t, filepath.Join(dir, "fail"))
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The death is seen, and the remount fails, in the background: until
	// then Wait may say nothing is pending yet.
	var err error
	eventually(t, "Wait reports the failed remount", func() bool {
		err = s.waitMounted("m1")
		return err != nil
	})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "could not be mounted again") {
		t.Fatalf("Wait on a layer whose remount failed: %v, want unavailable (could not be mounted again)", err)
	}
	if mounted(t, mp) {
		t.Fatal("a failed remount left a mount")
	}
}

// TestTakeoverMarksPending: while a dead worker's successor starts, its
// mounts are pending (their readers wait; Wait says so), and they are
// mounted once the successor serves.
func TestTakeoverMarksPending(t *testing.T) {
	e := newEnv(t, PerImage)
	gate := t.TempDir()
	e.opts.Binary = gatedBinary(t, gate)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]
	eventually(t, "a standby worker", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.standby != nil
	})
	s.stopStandby() // the successor is a gated spawn, not the standby
	touch(t, filepath.Join(gate, "gate"))

	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the successor starting", func() bool {
		_, err := os.Stat(filepath.Join(gate, "started"))
		return err == nil
	})
	s.pendingNow(t, "m1")
	if !mounted(t, mp) {
		t.Fatal("a mount being taken over was detached")
	}

	touch(t, filepath.Join(gate, "go"))
	if err := s.waitMounted("m1"); err != nil {
		t.Fatalf("Wait after the takeover: %v", err)
	}
	s.waitSuccessor(t, id, old, "m1")
	e.readsBack(t, mp)
}
