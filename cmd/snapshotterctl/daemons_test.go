package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/daemonapi"
)

const (
	testLayer1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testLayer2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	testTOC    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

// workerFixture is a run dir with a worker that answers (two mounts), an
// idle one, one whose socket is stale and one that never answers.
type workerFixture struct {
	runDir, logDir string
	busy, idle     daemonapi.DaemonInfo
}

func newWorkerFixture(t *testing.T) workerFixture {
	t.Helper()
	dir := shortDir(t)
	f := workerFixture{runDir: filepath.Join(dir, "run"), logDir: filepath.Join(dir, "log")}
	f.busy = daemonapi.DaemonInfo{
		ID:        "img-busy",
		PID:       4242,
		Version:   "v1.2.3",
		State:     daemonapi.DaemonRunning,
		StartTime: time.Now().Add(-90*time.Minute - 10*time.Second),
		Mounts: []daemonapi.MountInfo{
			{ID: "m1", LayerDigest: testLayer1, ImageRef: "127.0.0.1:5000/app:v1", TOCDigest: testTOC, Mountpoint: "/var/lib/lazyfs/snapshots/1/fs", State: daemonapi.MountServing, Verification: daemonapi.Forged, DiffID: testLayer2},
			{ID: "m2", LayerDigest: testLayer2, ImageRef: "127.0.0.1:5000/app:v1", TOCDigest: testTOC, Mountpoint: "/var/lib/lazyfs/snapshots/2/fs", State: daemonapi.MountFailed},
		},
	}
	f.idle = daemonapi.DaemonInfo{ID: "img-idle", PID: 77, Version: "v1.2.3", State: daemonapi.DaemonStarting, StartTime: time.Now().Add(-5 * time.Second)}
	startFakeWorker(t, f.runDir, f.busy)
	startFakeWorker(t, f.runDir, f.idle)
	staleWorker(t, f.runDir, "img-dead")
	hungWorker(t, f.runDir, "img-hung")
	// Neither a stray file nor a worker dir without its socket is a worker.
	if err := os.WriteFile(filepath.Join(f.runDir, "workers", "README"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.runDir, "workers", "img-spawning"), 0o700); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f workerFixture) args(cmd ...string) []string {
	return append([]string{"--run-dir", f.runDir, "--log-dir", f.logDir}, cmd...)
}

func (f workerFixture) log(id string) string {
	return filepath.Join(f.logDir, "daemons", id+".log")
}

func TestDaemonsList(t *testing.T) {
	f := newWorkerFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "list", "--timeout", "300ms")...)
	if code != exitOK {
		t.Fatalf("exit status %d\n%s%s", code, stdout, stderr)
	}
	want := [][]string{
		{"ID", "PID", "STATE", "MOUNTS", "UPTIME", "LOG"},
		{"img-busy", "4242", "running", "2", "1h30m", f.log("img-busy")},
		{"img-dead", "-", "unreachable", "-", "-", f.log("img-dead")},
		{"img-hung", "-", "unreachable", "-", "-", f.log("img-hung")},
		{"img-idle", "77", "starting", "0", "5s", f.log("img-idle")},
	}
	got := tableRows(stdout)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("table:\n%s\nwant rows %q", stdout, want)
	}
	// The errors of the unreachable workers, each on a line of its own.
	for _, w := range []string{
		"snapshotterctl: daemons list: worker img-dead (" + workerSocket(f.runDir, "img-dead") + "): info: ",
		"connection refused",
		"snapshotterctl: daemons list: worker img-hung (",
		"no answer within 300ms",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if n := strings.Count(stderr, "\n"); n != 2 {
		t.Errorf("stderr has %d lines, want 2:\n%s", n, stderr)
	}
}

func TestDaemonsListJSON(t *testing.T) {
	f := newWorkerFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "list", "--json", "--timeout=300ms")...)
	if code != exitOK {
		t.Fatalf("exit status %d\n%s%s", code, stdout, stderr)
	}
	var got []workerStatus
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if len(got) != 4 {
		t.Fatalf("%d workers, want 4:\n%s", len(got), stdout)
	}
	busy, dead, hung, idle := got[0], got[1], got[2], got[3]
	if busy.ID != "img-busy" || busy.PID != 4242 || busy.Version != "v1.2.3" || busy.State != daemonapi.DaemonRunning ||
		!busy.StartTime.Equal(f.busy.StartTime) || !slices.Equal(busy.Mounts, f.busy.Mounts) || busy.Error != "" {
		t.Errorf("busy worker: %+v", busy)
	}
	if busy.APISocket != workerSocket(f.runDir, "img-busy") || busy.Log != f.log("img-busy") {
		t.Errorf("busy worker paths: %s, %s", busy.APISocket, busy.Log)
	}
	if idle.ID != "img-idle" || idle.Mounts == nil || len(idle.Mounts) != 0 {
		t.Errorf("idle worker: %+v", idle)
	}
	for _, w := range []workerStatus{dead, hung} {
		if w.State != stateUnreachable || w.Error == "" || w.PID != 0 || w.Log != f.log(w.ID) {
			t.Errorf("unreachable worker: %+v", w)
		}
	}
	if dead.ID != "img-dead" || hung.ID != "img-hung" {
		t.Errorf("ids %s, %s", dead.ID, hung.ID)
	}
	// The DaemonInfo fields keep the worker API's names.
	if !strings.Contains(stdout, `"start_time"`) || !strings.Contains(stdout, `"layer_digest": "`+testLayer1+`"`) {
		t.Errorf("JSON does not use DaemonInfo's field names:\n%s", stdout)
	}
}

func TestDaemonsListNoWorkers(t *testing.T) {
	dir := shortDir(t)
	for _, tc := range []struct {
		name   string
		runDir string
	}{
		{"run dir missing", filepath.Join(dir, "missing")},
		{"workers dir empty", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(dir, "workers"), 0o700); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "--run-dir", tc.runDir, "--log-dir", dir, "daemons", "list")
			if code != exitOK {
				t.Fatalf("exit status %d: %s", code, stderr)
			}
			if strings.Fields(stdout)[0] != "ID" || strings.Count(stdout, "\n") != 1 {
				t.Errorf("want a header only:\n%s", stdout)
			}
			if !strings.Contains(stderr, "no workers found under "+filepath.Join(tc.runDir, "workers")) {
				t.Errorf("no hint on stderr:\n%s", stderr)
			}
			code, stdout, _ = runCLI(t, "--run-dir", tc.runDir, "--log-dir", dir, "daemons", "list", "--json")
			if code != exitOK || strings.TrimSpace(stdout) != "[]" {
				t.Errorf("--json: exit status %d, output %q; want 0, []", code, stdout)
			}
		})
	}
}

func TestDaemonsListFromConfig(t *testing.T) {
	dir := shortDir(t)
	runDir, logDir := filepath.Join(dir, "run"), filepath.Join(dir, "log")
	startFakeWorker(t, runDir, daemonapi.DaemonInfo{ID: "w1", PID: 1, State: daemonapi.DaemonRunning})
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("run_dir = \""+runDir+"\"\nlog_dir = \""+logDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "daemons", "list", "--config", cfg)
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	rows := tableRows(stdout)
	if len(rows) != 2 || rows[1][0] != "w1" || rows[1][5] != filepath.Join(logDir, "daemons", "w1.log") {
		t.Errorf("table:\n%s", stdout)
	}
}

func TestDaemonsListBrokenConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("[workers]\nmode = \"per-node\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "--config", cfg, "daemons", "list")
	want := "snapshotterctl: daemons list: " + cfg + ":2: workers.mode"
	if code != exitError || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func TestDaemonsInspect(t *testing.T) {
	f := newWorkerFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "inspect", "img-busy")...)
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	for _, w := range []string{
		"ID:         img-busy\n",
		"PID:        4242\n",
		"Version:    v1.2.3\n",
		"State:      running\n",
		"(up 1h30m)\n",
		"API socket: " + workerSocket(f.runDir, "img-busy") + "\n",
		"Log:        " + f.log("img-busy") + "\n",
		"Mounts:     2\n",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	_, mounts, _ := strings.Cut(stdout, "\n\n")
	want := [][]string{
		{"MOUNT", "ID", "STATE", "LAYER", "DIGEST", "IDENTITY", "IMAGE", "REF", "MOUNTPOINT"},
		{"m1", "serving", testLayer1, "forged:sha256:222222222222…", "127.0.0.1:5000/app:v1", "/var/lib/lazyfs/snapshots/1/fs"},
		{"m2", "failed", testLayer2, "-", "127.0.0.1:5000/app:v1", "/var/lib/lazyfs/snapshots/2/fs"},
	}
	if got := tableRows(mounts); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("mounts table:\n%s\nwant rows %q", mounts, want)
	}

	code, stdout, stderr = runCLI(t, f.args("daemons", "inspect", "--json", "img-busy")...)
	if code != exitOK {
		t.Fatalf("--json: exit status %d: %s", code, stderr)
	}
	var st workerStatus
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if st.ID != f.busy.ID || st.PID != f.busy.PID || !slices.Equal(st.Mounts, f.busy.Mounts) || st.Log != f.log("img-busy") {
		t.Errorf("--json: %+v", st)
	}
}

func TestDaemonsInspectFailures(t *testing.T) {
	f := newWorkerFixture(t)
	tests := []struct {
		name   string
		id     string
		stderr []string
	}{
		{"unknown worker", "img-nope", []string{"snapshotterctl: daemons inspect: worker img-nope: not found: no ", "daemons list"}},
		{"dead worker", "img-dead", []string{"connection refused", "its log: " + f.log("img-dead")}},
		{"hung worker", "img-hung", []string{"no answer within 200ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, f.args("daemons", "inspect", tc.id, "--timeout", "200ms")...)
			if code != exitError || stdout != "" {
				t.Errorf("exit status %d, stdout %q; want 1 and nothing", code, stdout)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("error is not one line:\n%s", stderr)
			}
		})
	}
}

func TestFormatUptime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Minute, "0s"}, // clock skew
		{59*time.Second + 900*time.Millisecond, "59s"},
		{12*time.Minute + 30*time.Second, "12m30s"},
		{3*time.Hour + 12*time.Minute + 59*time.Second, "3h12m"},
		{4*24*time.Hour + 3*time.Hour + 5*time.Minute, "4d3h"},
	}
	for _, tc := range tests {
		if got := formatUptime(now.Add(-tc.ago), now); got != tc.want {
			t.Errorf("formatUptime(%s ago) = %q, want %q", tc.ago, got, tc.want)
		}
	}
	if got := formatUptime(time.Time{}, now); got != "-" {
		t.Errorf("unknown start: %q", got)
	}
}
