package worker_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

const testRepo = "lazyfs/test"

// env is one registry with one layer in it.
type env struct {
	reg   *testregistry.Registry
	layer *testregistry.Layer
	root  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{reg: testregistry.New(t, testRepo), layer: testregistry.BuildLayer(t, "one"), root: t.TempDir()}
	e.reg.AddBlob(e.layer.Blob)
	return e
}

func (e *env) request(mountID, mountpoint string) daemonapi.LoadLayerRequest {
	if mountpoint == "" {
		mountpoint = "/mnt/" + mountID
	}
	return daemonapi.LoadLayerRequest{
		MountID:     mountID,
		ImageRef:    e.reg.Ref("v1"),
		LayerDigest: e.layer.Digest.String(),
		TOCDigest:   e.layer.TOCDigest.String(),
		Mountpoint:  mountpoint,
	}
}

func load(t *testing.T, w *worker.Worker, req daemonapi.LoadLayerRequest) daemonapi.LayerInfo {
	t.Helper()
	ctx, cancel := testContext(t)
	defer cancel()
	info, err := w.LoadLayer(ctx, req)
	if err != nil {
		t.Fatalf("LoadLayer %s: %v", req.MountID, err)
	}
	return info
}

// attach hands the worker a copy of m's fd and returns the INIT state.
func attach(t *testing.T, w *worker.Worker, mountID string, m *fuseMount) failover.InitState {
	t.Helper()
	fd := m.dup()
	ctx, cancel := testContext(t)
	defer cancel()
	st, err := w.Attach(ctx, daemonapi.AttachRequest{MountID: mountID}, fd)
	if err != nil {
		unix.Close(fd) // an error leaves the fd with the caller
		t.Fatalf("Attach %s: %v", mountID, err)
	}
	return st
}

func mountStates(t *testing.T, w *worker.Worker) map[string]daemonapi.MountState {
	t.Helper()
	info, err := w.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]daemonapi.MountState{}
	for _, m := range info.Mounts {
		states[m.ID] = m.State
	}
	return states
}

func TestLoadLayerKeepsTOC(t *testing.T) {
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	req := e.request("m1", "")

	info := load(t, w, req)
	want := daemonapi.LayerInfo{
		MountID:     "m1",
		LayerDigest: e.layer.Digest.String(),
		TOCDigest:   e.layer.TOCDigest.String(),
		BlobSize:    int64(len(e.layer.Blob)),
		Entries:     tocEntries(t, e.layer),
	}
	if info != want {
		t.Errorf("LoadLayer = %+v, want %+v", info, want)
	}
	if _, err := os.Stat(filepath.Join(e.root, "tocs", "sha256", e.layer.TOCDigest.Encoded()+".toc.gz")); err != nil {
		t.Fatalf("TOC not kept under <root>/tocs: %v", err)
	}
	store, err := toc.NewStore(filepath.Join(e.root, "tocs"))
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := store.Get(e.layer.TOCDigest, toc.DefaultLimits()); err != nil || kept.BlobDigest != e.layer.Digest {
		t.Errorf("kept TOC: %v, %v; want the layer's, verified", kept, err)
	}

	// A retried request is answered from memory, without the registry.
	gets := e.reg.RangedGets()
	if again := load(t, w, req); again != want {
		t.Errorf("retried LoadLayer = %+v, want %+v", again, want)
	}
	if got := e.reg.RangedGets(); got != gets {
		t.Errorf("retried LoadLayer made %d registry requests", got-gets)
	}
	// The same mount id for another layer is a conflict.
	other := req
	other.Mountpoint = "/elsewhere"
	if _, err := w.LoadLayer(logtest.WithT(t.Context(), t), other); !errdefs.IsAlreadyExists(err) {
		t.Errorf("LoadLayer of a different request under mount id m1: %v, want ErrAlreadyExists", err)
	}
	if states := mountStates(t, w); states["m1"] != daemonapi.MountLoaded || len(states) != 1 {
		t.Errorf("Info mounts = %v, want only m1 %s", states, daemonapi.MountLoaded)
	}
}

func TestLoadLayerRefused(t *testing.T) {
	e := newEnv(t)
	plain := gzipTar(t)
	plainDigest := e.reg.AddBlob(plain)
	w := newWorker(t, e.root, false)

	for _, tc := range []struct {
		name   string
		modify func(*daemonapi.LoadLayerRequest)
		is     func(error) bool
		reason string // in the message
	}{
		{
			name:   "TOC digest differs from the TOC",
			modify: func(r *daemonapi.LoadLayerRequest) { r.TOCDigest = digest.FromString("another toc").String() },
			is:     errdefs.IsInvalidArgument,
			reason: toc.ReasonTOCDigestMismatch,
		},
		{
			name:   "malformed TOC digest",
			modify: func(r *daemonapi.LoadLayerRequest) { r.TOCDigest = "sha256:abc" },
			is:     errdefs.IsInvalidArgument,
			reason: "toc digest",
		},
		{
			name:   "malformed layer digest",
			modify: func(r *daemonapi.LoadLayerRequest) { r.LayerDigest = "md5:abc" },
			is:     errdefs.IsInvalidArgument,
			reason: "layer digest",
		},
		{
			name:   "not an eStargz layer",
			modify: func(r *daemonapi.LoadLayerRequest) { r.LayerDigest = plainDigest.String() },
			is:     errdefs.IsInvalidArgument,
			reason: toc.ReasonUnsupportedFormat,
		},
		{
			name:   "layer not in the registry",
			modify: func(r *daemonapi.LoadLayerRequest) { r.LayerDigest = digest.FromString("missing").String() },
			is:     errdefs.IsNotFound,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := e.request("refused", "")
			tc.modify(&req)
			ctx, cancel := testContext(t)
			defer cancel()
			_, err := w.LoadLayer(ctx, req)
			if err == nil || !tc.is(err) {
				t.Fatalf("LoadLayer: %v, want a %s error", err, tc.name)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not name the reason %q", err, tc.reason)
			}
			if states := mountStates(t, w); len(states) != 0 {
				t.Errorf("refused layer left mounts %v", states)
			}
		})
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, "tocs", "sha256"))
	if len(ents) != 0 {
		t.Errorf("refused layers left %d files in the TOC store", len(ents))
	}
}

// gzipTar is a gzip-compressed tar that is not eStargz.
func gzipTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	testregistry.WriteTar(t, tw, &tar.Header{Name: "file", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}, []byte("data"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAttachServesFiles(t *testing.T) {
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	m := mountFuse(t)
	load(t, w, e.request("m1", m.dir))
	if states := mountStates(t, w); states["m1"] != daemonapi.MountLoaded {
		t.Errorf("before attach: state %q, want %q", states["m1"], daemonapi.MountLoaded)
	}

	st := attach(t, w, "m1", m)
	if len(st.Request) == 0 || len(st.Reply) == 0 {
		t.Fatalf("InitState = %d request bytes, %d reply bytes; want both non-empty", len(st.Request), len(st.Reply))
	}
	info, err := w.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantMount := daemonapi.MountInfo{
		ID:          "m1",
		LayerDigest: e.layer.Digest.String(),
		ImageRef:    e.reg.Ref("v1"),
		TOCDigest:   e.layer.TOCDigest.String(),
		Mountpoint:  m.dir,
		State:       daemonapi.MountServing,
		// No proof was asked for: the blob served is not known to have
		// the DiffID its chain ID implies.
		Verification: daemonapi.Unverified,
	}
	if info.ID != "test" || info.PID != os.Getpid() || info.Version != "test-version" || info.State != daemonapi.DaemonRunning || info.StartTime.IsZero() {
		t.Errorf("Info = %+v", info)
	}
	if len(info.Mounts) != 1 || info.Mounts[0] != wantMount {
		t.Errorf("Info mounts = %+v, want [%+v]", info.Mounts, wantMount)
	}

	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)
}

// The control server closes the fd of a failed attach (daemonapi.ControlHandler):
// the worker must not have closed it, nor keep using it.
func TestAttachErrorLeavesFDToCaller(t *testing.T) {
	testreq.RequireFUSE(t)
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	m := mountFuse(t)
	load(t, w, e.request("m1", m.dir))

	ctx, cancel := testContext(t)
	defer cancel()
	t.Run("unknown mount", func(t *testing.T) {
		fd := m.dup()
		if _, err := w.Attach(ctx, daemonapi.AttachRequest{MountID: "nope"}, fd); !errdefs.IsNotFound(err) {
			t.Errorf("Attach of an unknown mount: %v, want ErrNotFound", err)
		}
		if err := unix.Close(fd); err != nil {
			t.Errorf("fd after a failed attach: %v, want still open", err)
		}
	})
	t.Run("connection that is not mounted", func(t *testing.T) {
		fd, err := failover.OpenFuse()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Attach(ctx, daemonapi.AttachRequest{MountID: "m1"}, fd); err == nil {
			t.Error("Attach of an unmounted /dev/fuse fd succeeded")
		}
		if err := unix.Close(fd); err != nil {
			t.Errorf("fd after a failed attach: %v, want still open", err)
		}
	})
	// The failed attach left the mount attachable.
	attach(t, w, "m1", m)
	t.Run("attached already", func(t *testing.T) {
		fd := m.dup()
		if _, err := w.Attach(ctx, daemonapi.AttachRequest{MountID: "m1"}, fd); !errdefs.IsAlreadyExists(err) {
			t.Errorf("second Attach: %v, want ErrAlreadyExists", err)
		}
		if err := unix.Close(fd); err != nil {
			t.Errorf("fd after a failed attach: %v, want still open", err)
		}
	})
	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)
}

func TestLoadLayerFromKeptTOCWithRegistryDown(t *testing.T) {
	e := newEnv(t)
	first := newWorker(t, e.root, false)
	want := load(t, first, e.request("m1", ""))
	first.Close()

	e.reg.Stop()
	w := newWorker(t, e.root, false)
	m := mountFuse(t)
	if got := load(t, w, e.request("m1", m.dir)); got != want {
		t.Errorf("LoadLayer from the kept TOC = %+v, want %+v", got, want)
	}
	attach(t, w, "m1", m)
	within(t, "list while the registry is down", func() {
		if _, err := os.ReadDir(filepath.Join(m.dir, "usr", "bin")); err != nil {
			t.Errorf("readdir needs no registry, got %v", err)
		}
	})
	within(t, "read while the registry is down", func() {
		if _, err := fusetest.ReadFile(filepath.Join(m.dir, "etc", "hello.txt")); err == nil {
			t.Error("read succeeded with the registry down")
		}
	})

	e.reg.Start()
	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)
}

func TestDetachStopsServing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unmount bool
	}{
		{"after unmount", true},
		// A detach without unmount happens when the supervisor gives a
		// mount to another worker: this worker must let go of it.
		{"while mounted", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			w := newWorker(t, e.root, false)
			m := mountFuse(t)
			load(t, w, e.request("m1", m.dir))
			base := fusetest.FuseFDs(t)
			attach(t, w, "m1", m)
			testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)
			if got := fusetest.FuseFDs(t); got != base+1 {
				t.Fatalf("serving: %d /dev/fuse fds open, want %d (the test's and the worker's)", got, base+1)
			}
			if tc.unmount {
				m.unmount()
				if m.mounted() {
					t.Fatal("still in mountinfo after unmount")
				}
			}

			ctx, cancel := testContext(t)
			defer cancel()
			if err := w.Detach(ctx, "m1"); err != nil {
				t.Fatalf("Detach: %v", err)
			}
			if got := fusetest.FuseFDs(t); got != base {
				t.Errorf("after Detach: %d /dev/fuse fds open, want %d: the worker kept its copy", got, base)
			}
			if states := mountStates(t, w); len(states) != 0 {
				t.Errorf("after Detach: mounts %v, want none", states)
			}
			if err := w.Detach(ctx, "m1"); !errdefs.IsNotFound(err) {
				t.Errorf("second Detach: %v, want ErrNotFound", err)
			}
			select {
			case <-w.Done():
				t.Error("a worker without ExitWhenIdle is done after its last detach")
			default:
			}
		})
	}
}

func TestExitWhenIdle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exitIdle bool
	}{
		{"exit when idle", true},
		{"keep running", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			w := newWorker(t, e.root, tc.exitIdle)
			load(t, w, e.request("a", ""))
			load(t, w, e.request("b", ""))
			ctx := logtest.WithT(t.Context(), t)
			if err := w.Detach(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			// Detach decides before it returns: no waiting needed.
			if isDone(w) {
				t.Fatal("done while a mount is left")
			}
			if err := w.Detach(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if isDone(w) != tc.exitIdle {
				t.Errorf("done after the last detach: %v, want %v", isDone(w), tc.exitIdle)
			}
			want := daemonapi.DaemonRunning
			if tc.exitIdle {
				want = daemonapi.DaemonStopping
			}
			if info, err := w.Info(ctx); err != nil || info.State != want {
				t.Errorf("Info after the last detach: state %q, %v; want %q", info.State, err, want)
			}
		})
	}
}

func TestShutdownClosesDone(t *testing.T) {
	w := newWorker(t, t.TempDir(), false)
	if err := w.Shutdown(logtest.WithT(t.Context(), t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(testTimeout):
		t.Fatal("Done not closed after Shutdown")
	}
	// A second request is harmless.
	if err := w.Shutdown(logtest.WithT(t.Context(), t)); err != nil {
		t.Fatal(err)
	}
}

// isDone reports whether the worker's Done channel is closed.
func isDone(w *worker.Worker) bool {
	select {
	case <-w.Done():
		return true
	default:
		return false
	}
}
