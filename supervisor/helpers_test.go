package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/layer"
)

// testTimeout bounds every single wait on the kernel, a worker or the
// supervisor, so that a bug shows as a failure instead of a hung test.
const testTimeout = 20 * time.Second

// lazyfsdBinary is the worker binary the supervisor spawns: the real one,
// from the repository's bin/.
func lazyfsdBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found above the test's directory")
		}
		dir = parent
	}
	bin := filepath.Join(dir, "bin", "lazyfsd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("worker binary %s missing: run make build (%v)", bin, err)
	}
	return bin
}

// within bounds fn, which touches a mount, by testTimeout.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	fusetest.Within(t, testTimeout, what, fn)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, testTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env is the world of one supervisor test: a registry with two layers, the
// supervisor's directories and a directory for mountpoints.
type env struct {
	t      *testing.T
	ctx    context.Context
	reg    *testregistry.Registry
	layers []*testregistry.Layer
	opts   Options
	mnt    string
}

func newEnv(t *testing.T, mode Mode) *env {
	t.Helper()
	testreq.RequireFUSE(t)
	bin := lazyfsdBinary(t)
	// Socket paths must stay short (sun_path is 108 bytes): not under
	// t.TempDir, whose names carry the test's name.
	runDir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	e := &env{
		t:   t,
		ctx: logtest.WithT(context.Background(), t),
		reg: testregistry.New(t, "lazyfs/test"),
		opts: Options{
			Root:         root,
			RunDir:       runDir,
			LogDir:       t.TempDir(),
			Binary:       bin,
			Mode:         mode,
			ReadyTimeout: 10 * time.Second,
			Worker: daemonapi.WorkerConfig{
				Version:  daemonapi.WorkerConfigVersion,
				Root:     root,
				RunDir:   runDir,
				LogLevel: "debug",
				// No hosts.toml of this machine: 127.0.0.1 is plain http.
				HostsDir:        t.TempDir(),
				FuseReaders:     4,
				MemoryCacheSize: 64 << 20,
				TOC:             daemonapi.TOCLimits{MaxCompressedSize: 64 << 20, MaxSize: 256 << 20, MaxEntries: 1_000_000},
			},
		},
		mnt: t.TempDir(),
	}
	for _, salt := range []string{"one", "two"} {
		l := testregistry.BuildLayer(t, salt)
		e.reg.AddBlob(l.Blob)
		e.layers = append(e.layers, l)
	}
	// Registered after the temp dirs, so it runs before they are removed.
	t.Cleanup(e.cleanup)
	return e
}

// layer is layer i of the image tag (its manifest digest derives from the
// tag), as the snapshotter would pass it.
func (e *env) layer(i int, tag string) layer.Layer {
	l := e.layers[i]
	return layer.Layer{
		ImageRef:       e.reg.Ref(tag),
		LayerDigest:    l.Digest,
		TOCDigest:      l.TOCDigest,
		ManifestDigest: e.manifest(tag),
	}
}

func (e *env) manifest(tag string) digest.Digest { return digest.FromString("manifest of " + tag) }

// workerID is the per-image worker id the supervisor gives image tag.
func (e *env) workerID(tag string) string { return "img-" + e.manifest(tag).Encoded()[:16] }

func (e *env) mountpoint(id string) string {
	e.t.Helper()
	mp := filepath.Join(e.mnt, id)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return mp
}

// supervisor starts a Supervisor on the env's directories. Cleanup closes
// it (stopping its workers) unless the test did.
func (e *env) supervisor() *testSupervisor {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	s, err := New(ctx, e.opts)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ts := &testSupervisor{Supervisor: s, e: e}
	e.t.Cleanup(func() {
		if !ts.closed {
			if e.t.Failed() {
				e.abortAll()
			}
			ts.close(false)
		}
	})
	return ts
}

type testSupervisor struct {
	*Supervisor
	e      *env
	closed bool
}

// close closes the supervisor, failing the test if that takes too long.
func (s *testSupervisor) close(keepWorkers bool) {
	t := s.e.t
	t.Helper()
	s.closed = true
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Close(ctx, keepWorkers) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close(keepWorkers=%v): %v", keepWorkers, err)
		}
	case <-time.After(testTimeout + 5*time.Second):
		t.Fatalf("Close(keepWorkers=%v) did not return", keepWorkers)
	}
}

func (s *testSupervisor) mount(id, mountpoint string, lay layer.Layer) {
	t := s.e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	if err := s.Mount(ctx, id, mountpoint, lay); err != nil {
		t.Fatalf("Mount %s: %v", id, err)
	}
}

func (s *testSupervisor) unmount(id, mountpoint string) {
	t := s.e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	if err := s.Unmount(ctx, id, mountpoint); err != nil {
		t.Fatalf("Unmount %s: %v", id, err)
	}
}

// pids returns the running workers' pids by id.
func (s *testSupervisor) pids() map[string]int {
	out := map[string]int{}
	for _, w := range s.Workers() {
		out[w.ID] = w.PID
	}
	return out
}

func (s *testSupervisor) records() map[string]record {
	s.e.t.Helper()
	recs, err := s.reg.list()
	if err != nil {
		s.e.t.Fatal(err)
	}
	out := map[string]record{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

// cleanup leaves nothing behind, even after a failure: it aborts the FUSE
// connections of a failed test (releasing calls blocked on them), detaches
// every mount under the env's mount dir, and kills the workers the test's
// supervisors spawned (found by the run dir in their arguments).
func (e *env) cleanup() {
	if e.t.Failed() {
		e.abortAll()
	}
	ents, _ := os.ReadDir(e.mnt)
	for _, ent := range ents {
		mp := filepath.Join(e.mnt, ent.Name())
		for mounted(e.t, mp) {
			if err := failover.Unmount(mp, true); err != nil {
				e.t.Errorf("cleanup: %v", err)
				break
			}
		}
	}
	for _, pid := range workerPIDs(e.opts.RunDir) {
		e.t.Logf("cleanup: killing leftover worker %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(e.t, pid)
	}
	os.RemoveAll(e.opts.RunDir)
}

func (e *env) abortAll() {
	ents, _ := os.ReadDir(e.mnt)
	for _, ent := range ents {
		fusetest.AbortConnection(e.t, filepath.Join(e.mnt, ent.Name()))
	}
}

// workerPIDs finds the lazyfsd processes whose arguments name runDir.
func workerPIDs(runDir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(runDir+"/")) || processGone(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// processGone tells whether pid has exited (a zombie has).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// waitGone waits until pid has exited and reaps it if it is a child of the
// test process that no one else reaps (a worker whose supervisor closed
// with keepWorkers, as init would after the snapshotter exited).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	eventually(t, fmt.Sprintf("worker %d exits", pid), func() bool { return processGone(pid) })
	for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got == pid {
			return // reaped now, or not our child, or reaped by its watcher
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
	}
}

func mounted(t *testing.T, mountpoint string) bool {
	return len(mountEntries(t, mountpoint)) > 0
}

// mountEntries reads the mounts at mountpoint from /proc/self/mountinfo,
// never from the mountpoint: its worker may be gone.
func mountEntries(t *testing.T, mountpoint string) []*mountinfo.Info {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountpoint))
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// kill sends sig to pid, which must be a worker (or the standby) of this
// env's run dir. A test that lost a worker's pid (say a mutant of the
// supervisor registered it under another id, and the map lookup gave 0)
// must fail, never signal pid 0: kill(2) reads it as the test's own process
// group, which includes `go test` and a mutation tester (SIGSTOP there
// stops them all, for good).
func (e *env) kill(pid int, sig syscall.Signal) error {
	e.t.Helper()
	if pid <= 1 || !slices.Contains(workerPIDs(e.opts.RunDir), pid) {
		e.t.Fatalf("pid %d is no worker of this test (workers: %v): not sending %v", pid, workerPIDs(e.opts.RunDir), sig)
	}
	return syscall.Kill(pid, sig)
}
