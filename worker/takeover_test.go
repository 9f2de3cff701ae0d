package worker_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

// TestSuccessorTakesConnectionOver: a second worker, handed the same
// connection with the first one's INIT state, serves it once the first one
// has stopped; Collect hands a controller a live copy of the connection with
// that state; Resend works on a taken-over mount.
func TestSuccessorTakesConnectionOver(t *testing.T) {
	e := newEnv(t)
	first := newWorker(t, e.root, false)
	m := mountFuse(t)
	load(t, first, e.request("m1", m.dir))
	st := attach(t, first, "m1", m)
	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)

	t.Run("collect", func(t *testing.T) {
		ctx, cancel := testContext(t)
		defer cancel()
		conns, err := first.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(conns) != 1 || conns[0].MountID != "m1" || !slices.Equal(conns[0].Init.Request, st.Request) || !slices.Equal(conns[0].Init.Reply, st.Reply) {
			t.Fatalf("Collect = %+v, want m1 with its INIT state", conns)
		}
		defer unix.Close(conns[0].FD)
		var a, b unix.Stat_t
		if err := unix.Fstat(conns[0].FD, &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fstat(m.fd, &b); err != nil {
			t.Fatal(err)
		}
		if a.Rdev != b.Rdev {
			t.Errorf("collected fd is not /dev/fuse")
		}
	})

	// The first worker stops serving (as if it died: its fd copy goes,
	// the test's copy keeps the connection).
	first.Close()

	second := newWorker(t, e.root, false)
	load(t, second, e.request("m1", m.dir))
	ctx, cancel := testContext(t)
	defer cancel()

	// A state this build would answer differently is refused, and the fd
	// stays the caller's.
	bad := st
	bad.Reply = slices.Clone(st.Reply)
	bad.Reply[len(bad.Reply)-1] ^= 0xff
	fd := m.dup()
	if _, err := second.Attach(ctx, daemonapi.AttachRequest{MountID: "m1", Resume: &bad}, fd); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("takeover with a different INIT reply: %v, want failed precondition", err)
	}
	unix.Close(fd)

	fd = m.dup()
	got, err := second.Attach(ctx, daemonapi.AttachRequest{MountID: "m1", Resume: &st}, fd)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("takeover: %v", err)
	}
	if !slices.Equal(got.Request, st.Request) || !slices.Equal(got.Reply, st.Reply) {
		t.Errorf("takeover answered another INIT state")
	}
	if states := mountStates(t, second); states["m1"] != daemonapi.MountServing {
		t.Errorf("after takeover: state %q, want serving", states["m1"])
	}
	checkUncached(t, m.dir, e.layer)

	if st.SupportsResend() {
		if err := second.Resend(ctx, "m1"); err != nil {
			t.Errorf("Resend: %v", err)
		}
	}
	if err := second.Resend(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Resend of an unknown mount: %v, want not found", err)
	}
	checkUncached(t, m.dir, e.layer)
}

// checkUncached reads every file of the layer past the page cache, so that
// each read reaches whoever serves the mount now (it hangs, and fails the
// test, when nobody does).
func checkUncached(t *testing.T, dir string, l *testregistry.Layer) {
	t.Helper()
	for name, want := range l.Files {
		within(t, "read "+name, func() {
			got, err := fusetest.ReadFileUncached(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, %v; want the layer's %d bytes", name, len(got), err, len(want))
			}
		})
	}
}

// TestCollectAndResendNeedAServedMount: a loaded layer that no connection
// serves yet is not handed out by Collect, and cannot be asked to resend.
func TestCollectAndResendNeedAServedMount(t *testing.T) {
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	load(t, w, e.request("m1", ""))
	ctx, cancel := testContext(t)
	defer cancel()
	conns, err := w.Collect(ctx)
	if err != nil || len(conns) != 0 {
		t.Errorf("Collect with no served mount = %+v, %v; want none", conns, err)
	}
	if err := w.Resend(ctx, "m1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Resend of a mount not served: %v, want failed precondition", err)
	}
}
