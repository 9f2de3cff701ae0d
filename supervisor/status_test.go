package supervisor

import (
	"encoding/binary"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/layout"
)

func TestProcessRSS(t *testing.T) {
	rss, err := processRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("processRSS(self) = %d, %v; want a positive size", rss, err)
	}
	if _, err := processRSS(1 << 30); err == nil {
		t.Error("processRSS of no process did not fail")
	}
}

// TestTicksToTime: the start time kept in the registry (clock ticks since
// boot) turns into this test process's wall-clock start.
func TestTicksToTime(t *testing.T) {
	before := time.Now()
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ticks, err := processStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	got := ticksToTime(ticks)
	// Boot time has a resolution of a second and ticks of 10ms.
	if got.Before(before.Add(-2*time.Second)) || got.After(time.Now().Add(2*time.Second)) {
		t.Errorf("start time %v, want about %v", got, before)
	}
	if !ticksToTime(0).IsZero() {
		t.Error("unknown start time is not zero")
	}
}

func TestWorkerHistory(t *testing.T) {
	var h workerHistory
	if n, e := h.get("w"); n != 0 || e != nil {
		t.Fatalf("empty history: %d, %+v", n, e)
	}
	h.exited(&worker{id: "w", pid: 42})
	h.restarted("w")
	h.restarted("w")
	n, e := h.get("w")
	if n != 2 || e == nil || e.PID != 42 || e.Cause != "unknown" || e.Expected || e.Time.IsZero() {
		t.Errorf("history: %d restarts, last exit %+v; want 2 and pid 42", n, e)
	}
	h.exited(&worker{id: "w", pid: 43, stopping: true})
	if _, e := h.get("w"); e.PID != 43 || !e.Expected {
		t.Errorf("last exit %+v; want pid 43, expected", e)
	}
	if n, _ := h.get("other"); n != 0 {
		t.Errorf("another id has %d restarts", n)
	}
}

// initState is a saved FUSE INIT request offering protocol 7.minor, with
// FUSE_NOTIFY_RESEND when resend is set.
func initState(minor uint32, resend bool) failover.InitState {
	req := make([]byte, 64)
	binary.NativeEndian.PutUint32(req[4:], 26) // FUSE_INIT
	binary.NativeEndian.PutUint32(req[40:], 7)
	binary.NativeEndian.PutUint32(req[44:], minor)
	binary.NativeEndian.PutUint32(req[52:], 1<<30) // flags2 is valid
	if resend {
		binary.NativeEndian.PutUint32(req[56:], 1<<(39-32))
	}
	return failover.InitState{Request: req}
}

// heldConn is a connection whose fd the supervisor holds (a copy of
// /dev/null stands in for /dev/fuse: it is never read), closed at cleanup.
func heldConn(t *testing.T, init failover.InitState) *failover.Conn {
	t.Helper()
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := failover.NewConn(fd, init)
	t.Cleanup(c.Close)
	return c
}

// fakeWorker is a worker the supervisor knows without a process of its
// own: this test process stands in for it (its pid has an RSS).
func fakeWorker(id string, mounts ...*mountState) *worker {
	w := &worker{id: id, pid: os.Getpid(), exited: make(chan struct{}), mounts: map[string]*mountState{}}
	for _, m := range mounts {
		w.mounts[m.id] = m
	}
	return w
}

// TestResendSupported: snapshotterctl says resend is supported only when
// every mount's kernel offered it, and never for a worker without mounts.
func TestResendSupported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resend []bool
		want   bool
	}{
		{"no mounts", nil, false},
		{"one mount with resend", []bool{true}, true},
		{"every mount with resend", []bool{true, true}, true},
		{"one mount without", []bool{true, false}, false},
		{"the first mount without", []bool{false, true}, false},
	} {
		var st WorkerStatus
		for _, r := range tc.resend {
			st.Mounts = append(st.Mounts, MountStatus{Resend: r})
		}
		if got := st.ResendSupported(); got != tc.want {
			t.Errorf("%s: ResendSupported() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMountStatus: what snapshotterctl shows of each mount: serving only
// when the supervisor holds the connection and its INIT (else a death of
// the worker gives its readers errors: unheld), the kernel's protocol and
// resend offer, and the verdict on the layer.
func TestMountStatus(t *testing.T) {
	l := layer.Layer{ImageRef: "127.0.0.1:5000/a:1", LayerDigest: digest.FromString("layer")}
	diffID := digest.FromString("diff").String()
	held := &mountState{id: "held", mountpoint: "/m/held", layer: l, conn: heldConn(t, initState(41, true)),
		verdict: &daemonapi.VerdictRequest{State: daemonapi.Verified, DiffID: diffID}}
	noResend := &mountState{id: "noresend", mountpoint: "/m/noresend", layer: l, conn: heldConn(t, initState(31, false))}
	noInit := &mountState{id: "noinit", mountpoint: "/m/noinit", layer: l, conn: heldConn(t, failover.InitState{})}
	noFD := &mountState{id: "nofd", mountpoint: "/m/nofd", layer: l, conn: failover.NewConn(-1, initState(41, true))}
	noConn := &mountState{id: "noconn", mountpoint: "/m/noconn", layer: l}
	w := fakeWorker("w", held, noResend, noInit, noFD, noConn)

	s := &Supervisor{workers: map[string]*worker{"w": w}}
	st, err := s.WorkerStatus("w")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]MountStatus{}
	var order []string
	for _, m := range st.Mounts {
		got[m.ID] = m
		order = append(order, m.ID)
	}
	if want := []string{"held", "noconn", "nofd", "noinit", "noresend"}; !slices.Equal(order, want) {
		t.Errorf("mounts in order %v, want %v (sorted by id)", order, want)
	}
	want := map[string]MountStatus{
		"held": {ID: "held", WorkerID: "w", Mountpoint: "/m/held", ImageRef: l.ImageRef, LayerDigest: l.LayerDigest.String(),
			State: MountServing, Resend: true, Verification: string(daemonapi.Verified), DiffID: diffID, Protocol: "7.41"},
		"noresend": {ID: "noresend", WorkerID: "w", Mountpoint: "/m/noresend", ImageRef: l.ImageRef, LayerDigest: l.LayerDigest.String(),
			State: MountServing, Verification: string(daemonapi.Unverified), Protocol: "7.31"},
		"noinit": {ID: "noinit", WorkerID: "w", Mountpoint: "/m/noinit", ImageRef: l.ImageRef, LayerDigest: l.LayerDigest.String(),
			State: MountUnheld, Verification: string(daemonapi.Unverified)},
		"nofd": {ID: "nofd", WorkerID: "w", Mountpoint: "/m/nofd", ImageRef: l.ImageRef, LayerDigest: l.LayerDigest.String(),
			State: MountUnheld, Resend: true, Verification: string(daemonapi.Unverified), Protocol: "7.41"},
		"noconn": {ID: "noconn", WorkerID: "w", Mountpoint: "/m/noconn", ImageRef: l.ImageRef, LayerDigest: l.LayerDigest.String(),
			State: MountUnheld, Verification: string(daemonapi.Unverified)},
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("mount %s:\n got %+v\nwant %+v", id, got[id], w)
		}
	}
}

// TestWorkerStatusOfNoWorker: asking for a worker id that runs no worker
// is a not-found error naming the id.
func TestWorkerStatusOfNoWorker(t *testing.T) {
	s := &Supervisor{workers: map[string]*worker{"w": fakeWorker("w")}}
	if _, err := s.WorkerStatus("other"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "other") {
		t.Errorf("WorkerStatus(other): %v, want not found naming the id", err)
	}
	if st, err := s.WorkerStatus("w"); err != nil || st.ID != "w" {
		t.Errorf("WorkerStatus(w): %+v, %v", st, err)
	}
}

// TestWorkerList: snapshotterctl workers lists every running worker with
// its state and memory (none for a process that is gone), and a worker id
// given up in a crash loop as failed, once, until a successor serves it
// again.
func TestWorkerList(t *testing.T) {
	logDir := t.TempDir()
	live := fakeWorker("live", &mountState{id: "m1"})
	live.control = &daemonapi.ControlClient{}
	gone := fakeWorker("gone")
	close(gone.exited)
	s := &Supervisor{opts: Options{Mode: Shared, LogDir: logDir}, workers: map[string]*worker{"live": live, "gone": gone}}
	s.history.exited(&worker{id: "failed", pid: 77})
	s.history.restarted("failed")
	s.history.gaveUp("failed")
	s.history.gaveUp("live") // and then taken over by live: listed once, as it runs
	s.history.gaveUp("again")
	s.history.restarted("again") // a successor serves it: not failed any more

	list := s.WorkerList()
	var ids []string
	byID := map[string]WorkerStatus{}
	for _, st := range list {
		ids = append(ids, st.ID)
		byID[st.ID] = st
	}
	if want := []string{"failed", "gone", "live"}; !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want %v (sorted by id; a given-up id once, a recovered one not at all)", ids, want)
	}
	if st := byID["live"]; st.State != StateServing || st.RSSBytes <= 0 || st.PID != os.Getpid() || st.Mode != Shared ||
		st.LogFile != layout.LogDir(logDir).WorkerLog("live") || len(st.Mounts) != 1 {
		t.Errorf("running worker: %+v, want serving with its RSS, pid, mode, log and mount", st)
	}
	if st := byID["gone"]; st.State != StateExited || st.RSSBytes != 0 {
		t.Errorf("exited worker: %+v, want exited with no RSS (its pid may be another process now)", st)
	}
	st := byID["failed"]
	if st.State != StateFailed || st.PID != 0 || st.Restarts != 1 || st.LastExit == nil || st.LastExit.PID != 77 ||
		st.Mode != Shared || st.LogFile != layout.LogDir(logDir).WorkerLog("failed") {
		t.Errorf("given-up worker: %+v, want failed with its restarts, last exit and log", st)
	}
	// A status handed out is a copy: changing it changes no later answer.
	st.LastExit.PID = 1
	if _, e := s.history.get("failed"); e.PID != 77 {
		t.Errorf("last exit changed through a returned status: pid %d", e.PID)
	}
}

// TestStatusCounts: systemd's STATUS= line counts the running workers and
// every mount they serve.
func TestStatusCounts(t *testing.T) {
	s := &Supervisor{workers: map[string]*worker{
		"a": fakeWorker("a", &mountState{id: "1"}, &mountState{id: "2"}),
		"b": fakeWorker("b", &mountState{id: "3"}),
		"c": fakeWorker("c"),
	}}
	if got, want := s.Status(), (Status{Workers: 3, Mounts: 3}); got != want {
		t.Errorf("Status() = %+v, want %+v", got, want)
	}
}
