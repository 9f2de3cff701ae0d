package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/labels"
)

// testTimeout bounds every single wait on the kernel, a worker or the
// supervisor, so that a bug shows as a failure instead of a hung test.
const testTimeout = 20 * time.Second

// requireFuse stops a test that mounts: it needs root and /dev/fuse. It
// skips on a developer machine and fails under CI=true, where a missing
// requirement is a broken runner rather than a reason to pass.
func requireFuse(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	if len(missing) == 0 {
		return
	}
	msg := "test needs " + strings.Join(missing, " and ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

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

// within runs fn, which may touch a mount, and fails the test if it does
// not return in time. A call left blocked is released by the cleanup of
// newEnv, which aborts every FUSE connection of a failed test.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s: panic: %v\n%s", what, r, debug.Stack())
			}
		}()
		fn()
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatalf("%s: no answer after %v", what, testTimeout)
	}
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
	reg    *fakeRegistry
	layers []*testLayer
	opts   Options
	mnt    string
}

func newEnv(t *testing.T, mode Mode) *env {
	t.Helper()
	requireFuse(t)
	bin := lazyfsdBinary(t)
	// Socket paths must stay short (sun_path is 108 bytes): not under
	// t.TempDir, whose names carry the test's name.
	runDir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:   t,
		ctx: logtest.WithT(context.Background(), t),
		reg: newFakeRegistry(t, "lazyfs/test"),
		opts: Options{
			Root:         t.TempDir(),
			RunDir:       runDir,
			LogDir:       t.TempDir(),
			Binary:       bin,
			Mode:         mode,
			ReadyTimeout: 10 * time.Second,
			LogLevel:     "debug",
			// No hosts.toml of this machine: 127.0.0.1 is plain http.
			WorkerArgs: []string{"--hosts-dir", t.TempDir()},
		},
		mnt: t.TempDir(),
	}
	for _, salt := range []string{"one", "two"} {
		l := buildLayer(t, salt)
		e.reg.addBlob(l.blob)
		e.layers = append(e.layers, l)
	}
	// Registered after the temp dirs, so it runs before they are removed.
	t.Cleanup(e.cleanup)
	return e
}

// labels are the Prepare labels of layer i of the image tag (its manifest
// digest derives from the tag).
func (e *env) labels(i int, tag string) map[string]string {
	l := e.layers[i]
	return map[string]string{
		labels.TargetSnapshotRef: "sha256:" + digest.FromString("chain "+tag+strconv.Itoa(i)).Encoded(),
		labels.ImageRef:          e.reg.ref(tag),
		labels.LayerDigest:       l.digest.String(),
		labels.TOCDigest:         l.tocDigest.String(),
		labels.ManifestDigest:    e.manifest(tag).String(),
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

func (s *testSupervisor) mount(id, mountpoint string, lbls map[string]string) {
	t := s.e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.e.ctx, testTimeout)
	defer cancel()
	if err := s.Mount(ctx, id, mountpoint, lbls); err != nil {
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
		abortConnection(e.t, filepath.Join(e.mnt, ent.Name()))
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

// abortConnection ends the FUSE connection mounted at dir through the
// fusectl filesystem, which fails every call blocked on it.
func abortConnection(t *testing.T, dir string) {
	for _, info := range mountEntries(t, dir) {
		const fusectl = "/sys/fs/fuse/connections"
		if entries, _ := os.ReadDir(fusectl); len(entries) == 0 {
			_ = unix.Mount("fusectl", fusectl, "fusectl", 0, "")
		}
		p := fmt.Sprintf("%s/%d/abort", fusectl, info.Minor)
		if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
			t.Logf("failed to abort the FUSE connection at %s: %v", dir, err)
		}
	}
}

// fuseFDs counts this process's open /dev/fuse fds.
func fuseFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "/dev/fuse" {
			n++
		}
	}
	return n
}

// checkFiles reads every file and symlink of l through the mount at dir and
// compares it with what the tar held. Calls are bounded by within.
func checkFiles(t *testing.T, dir string, l *testLayer) {
	t.Helper()
	checkListing(t, dir, l)
	for name, want := range l.files {
		within(t, "read "+name, func() {
			got, err := readFile(filepath.Join(dir, name))
			switch {
			case err != nil:
				t.Errorf("read %s: %v", name, err)
			case !bytes.Equal(got, want):
				t.Errorf("%s: got %d bytes, want %d bytes equal to the tar's", name, len(got), len(want))
			}
		})
	}
	for name, want := range l.links {
		within(t, "readlink "+name, func() {
			got, err := os.Readlink(filepath.Join(dir, name))
			if err != nil || got != want {
				t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
			}
		})
	}
}

// checkListing lists the root of the mount at dir, which needs no registry.
func checkListing(t *testing.T, dir string, l *testLayer) {
	t.Helper()
	within(t, "list "+dir, func() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("readdir %s: %v", dir, err)
			return
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if strings.Join(names, ",") != strings.Join(l.top, ",") {
			t.Errorf("%s lists %q, want %q", dir, names, l.top)
		}
	})
}

// readFile reads a file of a FUSE mount with plain syscalls. os.Open would
// register the fd with the runtime's epoll, and on a FUSE file epoll_ctl
// sends a POLL request while its thread holds a P (golang/go#21014): if the
// request waits on a server in this process (or on one that is gone), a
// garbage collection stops every goroutine for good and no timeout fires.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return readFD(fd)
}

// readFD reads fd to its end with read(2).
func readFD(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
