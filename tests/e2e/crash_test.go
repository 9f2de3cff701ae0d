package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// Deadlines of the lazy-pull tests. They are generous for a loaded 2-core
// machine: what they bound takes milliseconds when all is well.
const (
	// remountDeadline bounds mounting a dead worker's layers again through
	// a new worker.
	remountDeadline = 20 * time.Second
	// survivalPeriod is how long a container keeps reading while the
	// snapshotter is dead.
	survivalPeriod = 5 * time.Second
)

// TestSnapshotterKilledWhileReading kills the snapshotter under a container
// that keeps verifying files: the worker outlives it and the container reads
// on; the restarted snapshotter re-adopts the worker (same process, same
// mounts), runs new containers, and watches the adopted worker like its own.
func TestSnapshotterKilledWhileReading(t *testing.T) {
	s := startStack(t, harness.V2)
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	ctx := context.Background()

	r := s.startReader(t, img.ref, "reader-snap-kill", verifyManyScript)
	waitFor(t, 20*time.Second, "reader verifies its first files", func() (bool, string) {
		ok, fail, _ := r.state(t)
		if fail != "" {
			t.Fatalf("reader failed before any kill: %s", fail)
		}
		return ok >= 10, fmt.Sprintf("%d files verified; stderr: %q", ok, r.stderr())
	})
	worker := onlyWorker(t, s.snap)
	mounts := fuseMounts(t, s.snap)

	s.snap.Kill()
	killedAt := time.Now()
	before, _, _ := r.state(t)
	time.Sleep(survivalPeriod)
	after, fail, _ := r.state(t)
	t.Logf("while the snapshotter was dead for %v the container verified %d more files", time.Since(killedAt).Round(time.Millisecond), after-before)
	if fail != "" {
		t.Fatalf("reader failed after the snapshotter was killed: %s", fail)
	}
	// Two steps a second is a fraction of the script's pace.
	if minSteps := int(2 * survivalPeriod.Seconds()); after-before < minSteps {
		t.Fatalf("reader verified %d files in %v after the snapshotter was killed, want >= %d", after-before, survivalPeriod, minSteps)
	}
	if !running(worker.PID) {
		t.Fatalf("worker %s (pid %d) died with the snapshotter", worker.ID, worker.PID)
	}

	restartAt := time.Now()
	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshotter restarted in %v", time.Since(restartAt).Round(time.Millisecond))

	t.Run("WorkerReadopted", func(t *testing.T) {
		w := onlyWorker(t, s.snap)
		if w.PID != worker.PID || servingMounts(w) != len(img.layers) {
			t.Errorf("worker after restart: %s pid %d serving %d mounts; before: %s pid %d, want the same process serving %d",
				w.ID, w.PID, servingMounts(w), worker.ID, worker.PID, len(img.layers))
		}
		if now := fuseMounts(t, s.snap); fmt.Sprint(now) != fmt.Sprint(mounts) {
			t.Errorf("FUSE mounts after the restart: %v, before %v", now, mounts)
		}
	})

	t.Run("ReaderGoesOn", func(t *testing.T) {
		base, _, _ := r.state(t)
		waitFor(t, 20*time.Second, "reader goes on after the restart", func() (bool, string) {
			ok, fail, end := r.state(t)
			if fail != "" {
				t.Fatalf("reader failed after the restart: %s", fail)
			}
			return ok >= base+10 || end, fmt.Sprintf("%d files verified, %d before", ok, base)
		})
	})

	t.Run("NewContainerRuns", func(t *testing.T) { s.runChecksOf(t, img.ref, "after-snap-restart") })

	// The proof that the worker is adopted, not merely left alone: its
	// death is noticed, and its connections (collected at the restart)
	// are taken over: the running container reads on without an error.
	t.Run("AdoptedWorkerTakenOver", func(t *testing.T) {
		base, _, _ := r.state(t)
		killProcess(t, worker.PID)
		waitRemounted(t, s, img, worker.PID, mounts)
		waitFor(t, 20*time.Second, "reader goes on after the adopted worker died", func() (bool, string) {
			ok, fail, end := r.state(t)
			if fail != "" {
				t.Fatalf("reader failed after the adopted worker died: %s", fail)
			}
			return ok >= base+10 || end, fmt.Sprintf("%d files verified, %d before", ok, base)
		})
		s.runQuickChecks(t, img.ref, "after-adopted-worker-kill")
	})
}

// waitRemounted waits until a worker other than oldPID serves every layer
// of img, each mountpoint of old holding exactly one mount (taken over, or
// mounted again with the dead one detached, not left under the new one).
func waitRemounted(t *testing.T, s *stack, img estargzImage, oldPID int, old map[string]int) {
	t.Helper()
	took := waitFor(t, remountDeadline, "layers mounted again through a new worker", func() (bool, string) {
		ws := liveWorkers(t, s.snap)
		if len(ws) != 1 || ws[0].PID == oldPID || servingMounts(ws[0]) != len(img.layers) {
			return false, fmt.Sprintf("live workers %+v", ws)
		}
		now := fuseMounts(t, s.snap)
		if len(now) != len(old) {
			return false, fmt.Sprintf("FUSE mounts %v, before %v", now, old)
		}
		for mp := range old {
			if now[mp] != 1 {
				return false, fmt.Sprintf("FUSE mounts %v, before %v", now, old)
			}
		}
		return true, ""
	})
	t.Logf("layers mounted again through a new worker after %v", took.Round(time.Millisecond))
}

// TestWorkerKilledWhileSnapshotterDown kills the snapshotter, then its
// worker, and restarts the snapshotter while the registry is unreachable: at
// start-up it detaches the stale mounts and mounts the layers again through a
// new worker from the TOCs kept on disk, without the registry. Once the
// registry is back, a new container verifies every file.
func TestWorkerKilledWhileSnapshotterDown(t *testing.T) {
	s := startStack(t, harness.V2)
	gate := startGate(t, s.reg.Addr())
	img := s.convertToEStargz(t, gate.Addr())
	s.pullLazily(t, img)
	ctx := context.Background()
	worker := onlyWorker(t, s.snap)
	mounts := fuseMounts(t, s.snap)

	s.snap.Kill()
	killProcess(t, worker.PID)
	if err := gate.Down(); err != nil {
		t.Fatal(err)
	}
	restartAt := time.Now()
	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshotter restarted in %v with the registry unreachable", time.Since(restartAt).Round(time.Millisecond))
	waitRemounted(t, s, img, worker.PID, mounts)

	if err := gate.Up(); err != nil {
		t.Fatal(err)
	}
	s.runChecksOf(t, img.ref, "after-restore")
}

// TestWorkerKilledUnderReader kills the worker three times under a
// container reading a big file slowly through one open descriptor: each time
// a successor takes the worker's FUSE connections over (same mounts, new
// pid), and the reader only waits: it reads the whole file without an error.
func TestWorkerKilledUnderReader(t *testing.T) {
	s := startStack(t, harness.V2)
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	worker := onlyWorker(t, s.snap)
	mounts := fuseMounts(t, s.snap)

	r := s.startReader(t, img.ref, "reader-worker-kill", slowReadScript)
	next := 5
	for kill := range 3 {
		waitFor(t, 20*time.Second, "reader reads on", func() (bool, string) {
			ok, fail, end := r.state(t)
			if fail != "" {
				t.Fatalf("reader failed (after %d worker kills): %s", kill, fail)
			}
			if end {
				t.Fatalf("reader ended after %d of 3 kills: the test read too fast", kill)
			}
			return ok >= next, fmt.Sprintf("%d blocks read; stderr: %q", ok, r.stderr())
		})
		killProcess(t, worker.PID)
		waitRemounted(t, s, img, worker.PID, mounts)
		worker = onlyWorker(t, s.snap)
		next += 20
	}
	waitFor(t, time.Minute, "reader reads the whole file", func() (bool, string) {
		ok, fail, end := r.state(t)
		if fail != "" {
			t.Fatalf("reader failed after its worker was taken over: %s", fail)
		}
		return end, fmt.Sprintf("%d blocks read", ok)
	})
	s.runQuickChecks(t, img.ref, "after-worker-kill")
}

// runQuickChecks is runChecksOf without the 2000 small files of
// TestImageManyDir, whose first reads cost one registry request each: it
// verifies every other file of the image, the 8 MiB one included.
func (s *stack) runQuickChecks(t testing.TB, ref, id string) {
	t.Helper()
	script := fmt.Sprintf(`grep -v '  %s/' %s >/tmp/list
sha256sum -c /tmp/list >/tmp/sums 2>&1; echo "exit=$? ok=$(grep -c ': OK$' /tmp/sums) of $(wc -l </tmp/list)"; grep -v ': OK$' /tmp/sums || true`,
		harness.TestImageManyDir, harness.TestImageChecksumsPath)
	out, err := s.ctrd.CtrRun(context.Background(), "--snapshotter", "lazyfs", "--rm", ref, id, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	var code, ok, of int
	if _, err := fmt.Sscanf(out, "exit=%d ok=%d of %d\n", &code, &ok, &of); err != nil || code != 0 || ok != of || ok == 0 {
		t.Errorf("container %s printed:\n%s\nwant exit=0 and every listed file OK", id, out)
	}
}
