package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"

	"github.com/lazyfs/lazyfs/mgmtapi"
)

// fakeSnapshotter answers the management API from fixed data, as the
// snapshotter does from its supervisor.
type fakeSnapshotter struct {
	workers []mgmtapi.Worker
	status  mgmtapi.Status
	logDir  string

	mu        sync.Mutex
	restarts  []string
	shutdowns []bool // unmount_all of each shutdown request
	stop      func() // what a shutdown request does to the server
}

// Shutdown answers with the pid of a short-lived child: the CLI waits for
// that process to be gone, as it waits for the snapshotter's.
func (f *fakeSnapshotter) Shutdown(_ context.Context, unmountAll bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns = append(f.shutdowns, unmountAll)
	if f.stop != nil {
		// After the answer, as the snapshotter does.
		go f.stop()
	}
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

func (f *fakeSnapshotter) Status(context.Context) (mgmtapi.Status, error) { return f.status, nil }

func (f *fakeSnapshotter) Workers(context.Context) ([]mgmtapi.Worker, error) {
	return f.workers, nil
}

func (f *fakeSnapshotter) Worker(_ context.Context, id string) (mgmtapi.Worker, error) {
	for _, w := range f.workers {
		if w.ID == id {
			return w, nil
		}
	}
	return mgmtapi.Worker{}, fmt.Errorf("worker %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeSnapshotter) Mounts(context.Context) ([]mgmtapi.Mount, error) {
	var ms []mgmtapi.Mount
	for _, w := range f.workers {
		ms = append(ms, w.Mounts...)
	}
	return ms, nil
}

func (f *fakeSnapshotter) Restart(ctx context.Context, id string) (mgmtapi.Restart, error) {
	w, err := f.Worker(ctx, id)
	if err != nil {
		return mgmtapi.Restart{}, err
	}
	if w.State != "serving" {
		return mgmtapi.Restart{}, fmt.Errorf("worker %s is %s: %w", id, w.State, errdefs.ErrFailedPrecondition)
	}
	f.mu.Lock()
	f.restarts = append(f.restarts, id)
	f.mu.Unlock()
	return mgmtapi.Restart{ID: id, OldPID: w.PID, NewPID: w.PID + 1000, Duration: 1234 * time.Microsecond}, nil
}

func (f *fakeSnapshotter) LogPath(_ context.Context, id string) (string, error) {
	return filepath.Join(f.logDir, id+".log"), nil
}

const (
	testLayer1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testLayer2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// snapshotterFixture is a fake snapshotter serving its API in a run dir.
type snapshotterFixture struct {
	runDir string
	fake   *fakeSnapshotter
}

func newSnapshotterFixture(t *testing.T) snapshotterFixture {
	t.Helper()
	dir := shortDir(t)
	now := time.Now()
	busyMounts := []mgmtapi.Mount{
		{ID: "10", LayerDigest: testLayer2, ImageRef: "127.0.0.1:5000/app:v1", WorkerID: "img-busy", State: "serving", Mountpoint: "/var/lib/lazyfs/snapshots/10/fs", FUSENotifyResend: true, Verification: "forged", DiffID: testLayer1},
		{ID: "2", LayerDigest: testLayer1, ImageRef: "127.0.0.1:5000/app:v1", WorkerID: "img-busy", State: "serving", Mountpoint: "/var/lib/lazyfs/snapshots/2/fs", FUSENotifyResend: true, Verification: "verified"},
	}
	f := snapshotterFixture{runDir: filepath.Join(dir, "run"), fake: &fakeSnapshotter{
		workers: []mgmtapi.Worker{
			{ID: "img-busy", PID: 4242, Mode: "per-image", State: "serving", StartTime: now.Add(-90*time.Minute - 10*time.Second),
				Restarts: 2, LastExit: &mgmtapi.Exit{PID: 4000, Time: now.Add(-2 * time.Minute), Cause: "killed", Detail: "killed by SIGKILL"},
				RSSBytes: 12 << 20, LogFile: "/var/log/lazyfs/daemons/img-busy.log", FUSENotifyResend: true, Mounts: busyMounts},
			{ID: "img-idle", PID: 77, Mode: "per-image", State: "ready", StartTime: now.Add(-5 * time.Second),
				LastExit: &mgmtapi.Exit{PID: 76, Time: now.Add(-time.Hour), Cause: "killed", Expected: true}, LogFile: "/var/log/lazyfs/daemons/img-idle.log", Mounts: []mgmtapi.Mount{}},
		},
		status: mgmtapi.Status{Version: "v9", Health: "degraded", Problems: []string{"1 mounts lack FUSE_NOTIFY_RESEND"}, Mode: "per-image",
			Workers: 2, WorkersByState: map[string]int{"serving": 1, "ready": 1}, Mounts: 2,
			Kernel: mgmtapi.Kernel{Release: "6.18.0-1-amd64", FUSENotifyResend: true, MountsWithoutResend: 1, FUSEProtocols: []string{"7.41"}}},
		logDir: filepath.Join(dir, "log"),
	}}
	ctx := logtest.WithT(context.Background(), t)
	srv, err := mgmtapi.Listen(ctx, filepath.Join(f.runDir, "api.sock"), mgmtapi.NewServer(f.fake))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(ctx) })
	f.fake.stop = func() { srv.Close(ctx) }
	return f
}

func (f snapshotterFixture) args(cmd ...string) []string {
	return append([]string{"--run-dir", f.runDir}, cmd...)
}

func TestDaemonsList(t *testing.T) {
	f := newSnapshotterFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "list")...)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit status %d\n%s%s", code, stdout, stderr)
	}
	want := [][]string{
		{"ID", "PID", "STATE", "MOUNTS", "RESTARTS", "UPTIME", "LOG"},
		{"img-busy", "4242", "serving", "2", "2", "1h30m", "/var/log/lazyfs/daemons/img-busy.log"},
		{"img-idle", "77", "ready", "0", "0", "5s", "/var/log/lazyfs/daemons/img-idle.log"},
	}
	if got := tableRows(stdout); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("table:\n%s\nwant rows %q", stdout, want)
	}

	code, stdout, stderr = runCLI(t, f.args("daemons", "list", "-o", "wide")...)
	if code != exitOK {
		t.Fatalf("wide: exit status %d: %s", code, stderr)
	}
	for _, w := range []string{"MODE       RSS       RESEND  LAST EXIT", "per-image  12.0 MiB  yes     killed (pid 4000, 2m0s ago)", "per-image  -         -       stopped:killed (pid 76, 1h0m ago)"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("wide table lacks %q:\n%s", w, stdout)
		}
	}

	code, stdout, stderr = runCLI(t, f.args("daemons", "list", "--output=json")...)
	if code != exitOK {
		t.Fatalf("json: exit status %d: %s", code, stderr)
	}
	var got []mgmtapi.Worker
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if len(got) != 2 || got[0].ID != "img-busy" || got[0].Restarts != 2 || got[0].LastExit.Cause != "killed" || got[0].LogFile == "" {
		t.Errorf("json workers: %+v", got)
	}
	// Mounts sorted by snapshot id, numerically.
	if ids := []string{got[0].Mounts[0].ID, got[0].Mounts[1].ID}; !slices.Equal(ids, []string{"2", "10"}) {
		t.Errorf("mount order %q, want 2, 10", ids)
	}
}

func TestDaemonsInspect(t *testing.T) {
	f := newSnapshotterFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "inspect", "img-busy")...)
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	for _, w := range []string{
		"ID:                 img-busy\n",
		"PID:                4242\n",
		"State:              serving\n",
		"(up 1h30m)\n",
		"Restarts:           2\n",
		"Last exit:          killed (pid 4000, 2m0s ago)\n",
		"FUSE_NOTIFY_RESEND: yes\n",
		"Log:                /var/log/lazyfs/daemons/img-busy.log\n",
		"MOUNT ID  STATE    LAYER DIGEST",
		"2         serving  " + testLayer1 + "  verified                     127.0.0.1:5000/app:v1  /var/lib/lazyfs/snapshots/2/fs\n",
		"10        serving  " + testLayer2 + "  forged:sha256:111111111111…  127.0.0.1:5000/app:v1",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Index(stdout, "\n2 ") > strings.Index(stdout, "\n10 ") {
		t.Errorf("mounts not in numeric order:\n%s", stdout)
	}

	code, _, stderr = runCLI(t, f.args("daemons", "inspect", "img-gone")...)
	if want := "snapshotterctl: daemons inspect: snapshotter management api (" + filepath.Join(f.runDir, "api.sock") + "): inspect worker img-gone: worker img-gone: not found"; code != exitError || !strings.HasPrefix(stderr, want) {
		t.Errorf("unknown worker: exit status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func TestDaemonsRestart(t *testing.T) {
	f := newSnapshotterFixture(t)
	code, stdout, stderr := runCLI(t, f.args("daemons", "restart", "img-busy")...)
	if code != exitOK || stdout != "worker img-busy restarted: pid 4242 -> 5242 (1ms)\n" {
		t.Errorf("exit status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, f.args("daemons", "restart", "img-idle")...)
	if code != exitError || stdout != "" || !strings.Contains(stderr, "worker img-idle is ready: failed precondition") {
		t.Errorf("refused restart: exit status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	f.fake.mu.Lock()
	defer f.fake.mu.Unlock()
	if !slices.Equal(f.fake.restarts, []string{"img-busy"}) {
		t.Errorf("restarts %q", f.fake.restarts)
	}
}

func TestMountsList(t *testing.T) {
	f := newSnapshotterFixture(t)
	code, stdout, stderr := runCLI(t, f.args("mounts", "list")...)
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	want := [][]string{
		{"MOUNT", "ID", "WORKER", "STATE", "LAYER", "DIGEST", "IDENTITY", "IMAGE", "REF", "MOUNTPOINT"},
		{"2", "img-busy", "serving", testLayer1, "verified", "127.0.0.1:5000/app:v1", "/var/lib/lazyfs/snapshots/2/fs"},
		{"10", "img-busy", "serving", testLayer2, "forged:sha256:111111111111…", "127.0.0.1:5000/app:v1", "/var/lib/lazyfs/snapshots/10/fs"},
	}
	if got := tableRows(stdout); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("table:\n%s\nwant rows %q", stdout, want)
	}
	code, stdout, _ = runCLI(t, f.args("mounts", "list", "-o", "json")...)
	var ms []mgmtapi.Mount
	if err := json.Unmarshal([]byte(stdout), &ms); code != exitOK || err != nil || len(ms) != 2 {
		t.Errorf("json: exit status %d, %v:\n%s", code, err, stdout)
	}
}

func TestStatus(t *testing.T) {
	f := newSnapshotterFixture(t)
	code, stdout, stderr := runCLI(t, f.args("status")...)
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	for _, w := range []string{
		"Version:               v9\n",
		"Health:                degraded\n",
		"Workers:               2 (1 ready, 1 serving)\n",
		"Kernel:                6.18.0-1-amd64\n",
		"FUSE_NOTIFY_RESEND:    yes\n",
		"Mounts without RESEND: 1\n",
		"FUSE protocol:         7.41\n",
		"problem: 1 mounts lack FUSE_NOTIFY_RESEND\n",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	code, stdout, _ = runCLI(t, f.args("status", "-o", "json")...)
	var st mgmtapi.Status
	if err := json.Unmarshal([]byte(stdout), &st); code != exitOK || err != nil || !reflect.DeepEqual(st, f.fake.status) {
		t.Errorf("json: exit status %d, %v: %+v", code, err, st)
	}
}

// TestUnreachable: scripts tell "the snapshotter is down" (3) from a
// failed command (1).
func TestUnreachable(t *testing.T) {
	dir := shortDir(t)
	for _, cmd := range [][]string{{"status"}, {"daemons", "list"}, {"daemons", "restart", "w"}, {"daemons", "logs", "w"}, {"mounts", "list"}} {
		code, _, stderr := runCLI(t, append([]string{"--run-dir", dir}, cmd...)...)
		if code != exitUnreachable || !strings.Contains(stderr, filepath.Join(dir, "api.sock")) || !strings.Contains(stderr, "snapshotter not running") {
			t.Errorf("%q: exit status %d, stderr %q; want 3 naming the socket", cmd, code, stderr)
		}
	}
}

// TestSocketFromConfig finds the API through the config's run_dir.
func TestSocketFromConfig(t *testing.T) {
	f := newSnapshotterFixture(t)
	cfg := filepath.Join(shortDir(t), "config.toml")
	if err := os.WriteFile(cfg, []byte("run_dir = \""+f.runDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "daemons", "list", "--config", cfg)
	if rows := tableRows(stdout); code != exitOK || len(rows) != 3 {
		t.Errorf("exit status %d, output:\n%s%s", code, stdout, stderr)
	}
	bad := filepath.Join(shortDir(t), "config.toml")
	if err := os.WriteFile(bad, []byte("[workers]\nmode = \"per-node\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "--config", bad, "daemons", "list")
	if want := "snapshotterctl: daemons list: " + bad + ":2: workers.mode"; code != exitError || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func writeLog(t *testing.T, dir, id, data string) string {
	t.Helper()
	path := filepath.Join(dir, id+".log")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDaemonsLogs(t *testing.T) {
	f := newSnapshotterFixture(t)
	writeLog(t, f.fake.logDir, "w1", "one\ntwo\nthree\nfour\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default 100 lines", nil, "one\ntwo\nthree\nfour\n"},
		{"last two", []string{"--tail", "2"}, "three\nfour\n"},
		{"-n", []string{"-n", "1"}, "four\n"},
		{"none", []string{"--tail=0"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, f.args(append([]string{"daemons", "logs", "w1"}, tc.args...)...)...)
			if code != exitOK || stdout != tc.want {
				t.Errorf("exit status %d, output %q; want 0, %q (stderr %s)", code, stdout, tc.want, stderr)
			}
		})
	}
	code, _, stderr := runCLI(t, f.args("daemons", "logs", "w2")...)
	if want := "no log at " + filepath.Join(f.fake.logDir, "w2.log"); code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("missing log: exit status %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestDaemonsLogsFollow runs "logs ID -f" as an operator types it (flags
// after the id) and stops it as Ctrl-C does.
func TestDaemonsLogsFollow(t *testing.T) {
	f := newSnapshotterFixture(t)
	path := writeLog(t, f.fake.logDir, "w1", "old\nlast\n")
	ctx, cancel := context.WithCancel(logtest.WithT(context.Background(), t))
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, f.args("daemons", "logs", "w1", "-f", "--tail", "1"), &out, &errOut)
	}()
	waitFor(t, "the last line", func() bool { return out.String() == "last\n" })
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("new\n")
	fh.Close()
	waitFor(t, "the new line", func() bool { return out.String() == "last\nnew\n" })
	cancel()
	if code := <-done; code != exitOK || errOut.String() != "" {
		t.Errorf("exit status %d, stderr %q; want 0 and nothing", code, errOut.String())
	}
}
