package worker_test

import (
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
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
	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)

	if st.SupportsResend() {
		if err := second.Resend(ctx, "m1"); err != nil {
			t.Errorf("Resend: %v", err)
		}
	}
	if err := second.Resend(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Resend of an unknown mount: %v, want not found", err)
	}
	testregistry.CheckFiles(t, testTimeout, m.dir, e.layer)
}
