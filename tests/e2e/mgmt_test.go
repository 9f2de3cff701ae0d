package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/mgmtapi"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// ctl runs snapshotterctl against s's snapshotter (its management API in
// the snapshotter's run dir) and returns its exit status and output.
func (s *stack) ctl(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if err := env.CheckBinaries("snapshotterctl"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, env.Bin("snapshotterctl"), append([]string{"--run-dir", s.snap.RunDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("snapshotterctl %q: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// ctlOK is ctl for a command that must succeed.
func (s *stack) ctlOK(t testing.TB, args ...string) string {
	t.Helper()
	code, stdout, stderr := s.ctl(t, args...)
	if code != 0 {
		t.Fatalf("snapshotterctl %q: exit status %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
	}
	return stdout
}

// ctlWorkers is `snapshotterctl daemons list -o json`.
func (s *stack) ctlWorkers(t testing.TB) []mgmtapi.Worker {
	t.Helper()
	var ws []mgmtapi.Worker
	out := s.ctlOK(t, "daemons", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		t.Fatalf("daemons list -o json: %v\n%s", err, out)
	}
	return ws
}

// TestSnapshotterctlDaemons drives the workers as an operator does, through
// snapshotterctl and the snapshotter's management API only: the worker of a
// lazily pulled image is listed with its state, mounts and log file; its
// log's tail is shown; and `daemons restart` under a container reading in a
// loop replaces it (the pid changes) while the container sees no error.
func TestSnapshotterctlDaemons(t *testing.T) {
	s := startStack(t, harness.V2)
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	direct := onlyWorker(t, s.snap) // what the worker itself says

	ws := s.ctlWorkers(t)
	if len(ws) != 1 {
		t.Fatalf("daemons list shows %d workers, want 1: %+v", len(ws), ws)
	}
	w := ws[0]
	wantLog := filepath.Join(s.snap.LogDir(), "daemons", direct.ID+".log")
	if w.ID != direct.ID || w.PID != direct.PID || w.State != "serving" || len(w.Mounts) != len(img.layers) || w.LogFile != wantLog || w.Restarts != 0 {
		t.Errorf("daemons list: %+v; want id %s, pid %d, serving %d mounts, log %s, no restarts", w, direct.ID, direct.PID, len(img.layers), wantLog)
	}
	if w.RSSBytes <= 0 || w.StartTime.IsZero() {
		t.Errorf("daemons list: RSS %d, start time %v; want both known", w.RSSBytes, w.StartTime)
	}
	table := s.ctlOK(t, "daemons", "list")
	if !strings.Contains(table, direct.ID) || !strings.Contains(table, "serving") || !strings.Contains(table, wantLog) {
		t.Errorf("daemons list table lacks the worker, its state or its log:\n%s", table)
	}

	// The log's tail, as the worker wrote it.
	logData, err := os.ReadFile(wantLog)
	if err != nil || len(logData) == 0 {
		t.Fatalf("worker log %s: %v, %d bytes", wantLog, err, len(logData))
	}
	tail := s.ctlOK(t, "daemons", "logs", direct.ID, "--tail", "3")
	lines := strings.Split(strings.TrimSuffix(tail, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("daemons logs --tail 3 printed %d lines:\n%s", len(lines), tail)
	}
	now, _ := os.ReadFile(wantLog)
	for _, l := range lines {
		if l == "" || !bytes.Contains(now, []byte(l+"\n")) {
			t.Errorf("daemons logs printed %q, which is not a line of %s", l, wantLog)
		}
	}

	var st mgmtapi.Status
	if out := s.ctlOK(t, "status", "-o", "json"); json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status -o json:\n%s", out)
	}
	if st.Workers != 1 || st.WorkersByState["serving"] != 1 || st.Mounts != len(img.layers) || st.Kernel.Release == "" || st.Health == "" || len(st.Kernel.FUSEProtocols) != 1 {
		t.Errorf("status: %+v; want 1 serving worker, %d mounts, the kernel release and FUSE protocol", st, len(img.layers))
	}

	// A planned restart under a reader.
	r := s.startReader(t, img.ref, "reader-ctl-restart", slowReadScript)
	waitFor(t, 20*time.Second, "reader reads", func() (bool, string) {
		ok, fail, end := r.state(t)
		if fail != "" || end {
			t.Fatalf("reader failed or ended before the restart: %q, end %v", fail, end)
		}
		return ok >= 5, fmt.Sprintf("%d blocks read; stderr: %q", ok, r.stderr())
	})
	out := s.ctlOK(t, "daemons", "restart", direct.ID)
	var oldPID, newPID int
	if _, err := fmt.Sscanf(out, "worker "+direct.ID+" restarted: pid %d -> %d", &oldPID, &newPID); err != nil || oldPID != direct.PID || newPID == oldPID || newPID <= 0 {
		t.Fatalf("daemons restart printed %q (%v); want pid %d -> a new one", out, err, direct.PID)
	}
	if running(oldPID) {
		t.Errorf("old worker %d still runs after daemons restart returned", oldPID)
	}
	// The old process's exit is recorded by its watcher, a moment after
	// the restart returned.
	waitFor(t, 10*time.Second, "daemons list shows the restart", func() (bool, string) {
		w = s.ctlWorkers(t)[0]
		e := w.LastExit
		ok := w.PID == newPID && w.Restarts == 1 && w.State == "serving" && len(w.Mounts) == len(img.layers) &&
			e != nil && e.PID == oldPID && e.Expected
		return ok, fmt.Sprintf("%+v, last exit %+v; want pid %d, 1 restart, serving %d mounts, last exit of pid %d expected", w, e, newPID, len(img.layers), oldPID)
	})
	t.Logf("after the restart:\n%s\n%s", s.ctlOK(t, "daemons", "list", "-o", "wide"), s.ctlOK(t, "status"))
	waitFor(t, time.Minute, "reader reads the whole file", func() (bool, string) {
		ok, fail, end := r.state(t)
		if fail != "" {
			t.Fatalf("reader failed after daemons restart: %s", fail)
		}
		return end, fmt.Sprintf("%d blocks read", ok)
	})

	// An unknown worker is an error (1); no snapshotter is exit status 3.
	if code, _, stderr := s.ctl(t, "daemons", "restart", "img-none"); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("restart of an unknown worker: exit status %d, stderr %q; want 1, not found", code, stderr)
	}
	if code, _, stderr := s.ctl(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "status"); code != 3 {
		t.Errorf("status without a snapshotter: exit status %d (%s); want 3", code, stderr)
	}
}
