package daemonapi_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
)

// validInit is an INIT state that passes failover.InitState.Check.
func validInit(tag byte) failover.InitState {
	req := make([]byte, 104)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint32(req[4:], 26) // FUSE_INIT
	req[8] = tag
	return failover.InitState{Request: req, Reply: []byte{16, 0, 0, 0, tag}}
}

// failoverHandler records attach requests, holds the fds it is given and
// hands them back on collect, and records resends.
type failoverHandler struct {
	mu       sync.Mutex
	attached map[string]daemonapi.AttachRequest
	fds      map[string]int
	resent   []string
}

func newFailoverHandler(t *testing.T) *failoverHandler {
	h := &failoverHandler{attached: map[string]daemonapi.AttachRequest{}, fds: map[string]int{}}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, fd := range h.fds {
			unix.Close(fd)
		}
	})
	return h
}

func (h *failoverHandler) Attach(_ context.Context, req daemonapi.AttachRequest, fd int) (failover.InitState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attached[req.MountID] = req
	h.fds[req.MountID] = fd
	if req.Resume != nil {
		return *req.Resume, nil
	}
	return validInit(byte(len(req.MountID))), nil
}

func (h *failoverHandler) Collect(context.Context) ([]daemonapi.HeldConnection, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []daemonapi.HeldConnection
	for id, fd := range h.fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, daemonapi.HeldConnection{MountID: id, FD: dup, Init: validInit(byte(len(id)))})
	}
	return out, nil
}

func (h *failoverHandler) Resend(_ context.Context, mountID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.fds[mountID]; !ok {
		return fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	h.resent = append(h.resent, mountID)
	return nil
}

func TestAttachCarriesResumeState(t *testing.T) {
	h := newFailoverHandler(t)
	c := dial(t, startControl(t, h))
	r, _ := pipe(t)
	st := validInit(7)
	got, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m1", Resume: &st, DeferResend: true}, r)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Request, st.Request) || !slices.Equal(got.Reply, st.Reply) {
		t.Errorf("attach answered %+v, want the resumed state", got)
	}
	req := h.attached["m1"]
	if req.Resume == nil || !slices.Equal(req.Resume.Request, st.Request) || !slices.Equal(req.Resume.Reply, st.Reply) || !req.DeferResend {
		t.Errorf("worker got %+v, want the resume state with DeferResend", req)
	}

	// A fresh attach carries no state; recover_init travels.
	r2, _ := pipe(t)
	if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m2", RecoverInit: true}, r2); err != nil {
		t.Fatal(err)
	}
	if req := h.attached["m2"]; req.Resume != nil || !req.RecoverInit || req.DeferResend {
		t.Errorf("fresh attach reached the worker as %+v", req)
	}

	// State that is no INIT is refused before it is sent.
	bad := failover.InitState{Request: []byte("not an INIT"), Reply: []byte{1}}
	r3, _ := pipe(t)
	if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m3", Resume: &bad}, r3); !errdefs.IsInvalidArgument(err) {
		t.Errorf("attach with a malformed resume state: %v, want invalid argument", err)
	}
	if _, ok := h.attached["m3"]; ok {
		t.Error("the worker was handed a malformed resume state")
	}
}

func TestCollectHandsBackEveryConnection(t *testing.T) {
	h := newFailoverHandler(t)
	path := startControl(t, h)
	c := dial(t, path)
	readEnds := map[string]int{}
	for _, id := range []string{"a", "bb", "ccc"} {
		r, w := rawPipe(t)
		if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: id}, w); err != nil {
			t.Fatal(err)
		}
		unix.Close(w) // the handler holds its own copy
		t.Cleanup(func() { unix.Close(r) })
		readEnds[id] = r
	}
	conns, err := c.Collect(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 3 {
		t.Fatalf("collect returned %d connections, want 3", len(conns))
	}
	for _, hc := range conns {
		if hc.Init.Check() != nil || hc.Init.Request[8] != byte(len(hc.MountID)) {
			t.Errorf("mount %s: INIT state %v", hc.MountID, hc.Init)
		}
		// The fd is a live copy of the handler's: a write through it
		// reaches the pipe.
		msg := []byte("through " + hc.MountID)
		if _, err := unix.Write(hc.FD, msg); err != nil {
			t.Errorf("mount %s: write through the collected fd: %v", hc.MountID, err)
		}
		unix.Close(hc.FD)
		got := make([]byte, 64)
		n, err := unix.Read(readEnds[hc.MountID], got)
		if err != nil || string(got[:n]) != string(msg) {
			t.Errorf("mount %s: the collected fd is not its connection: read %q, %v", hc.MountID, got[:n], err)
		}
	}

	// A handler that cannot collect says so.
	c2 := dial(t, startControl(t, closingHandler))
	if _, err := c2.Collect(testContext(t)); !errdefs.IsNotImplemented(err) {
		t.Errorf("collect from a handler without Collect: %v, want not implemented", err)
	}
}

func TestResend(t *testing.T) {
	h := newFailoverHandler(t)
	c := dial(t, startControl(t, h))
	r, _ := pipe(t)
	if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m1"}, r); err != nil {
		t.Fatal(err)
	}
	if err := c.Resend(testContext(t), "m1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Resend(testContext(t), "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("resend of an unknown mount: %v, want not found", err)
	}
	if err := c.Resend(testContext(t), "../bad"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("resend of an invalid mount id: %v, want invalid argument", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(h.resent, []string{"m1"}) {
		t.Errorf("resends reached the worker for %v, want [m1]", h.resent)
	}
	c2 := dial(t, startControl(t, closingHandler))
	if err := c2.Resend(testContext(t), "m1"); !errdefs.IsNotImplemented(err) {
		t.Errorf("resend to a handler without Resend: %v, want not implemented", err)
	}
}

func (h *failoverHandler) ReplaceStderr(_ context.Context, fd int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fds["stderr"] = fd
	return nil
}

// TestFailoverPacketsRefused: a request of the failover messages that does
// not carry what it must is refused with invalid argument, and its fds are
// closed, never handed to the worker.
func TestFailoverPacketsRefused(t *testing.T) {
	h := newFailoverHandler(t)
	conn := rawControl(t, startControl(t, h))
	st := validInit(3)
	for _, tc := range []struct {
		name string
		msg  daemonapi.ControlMessage
		fds  int
	}{
		{"defer_resend without INIT state", daemonapi.ControlMessage{Type: daemonapi.MessageAttach, MountID: "m1", DeferResend: true}, 1},
		{"collect with an fd", daemonapi.ControlMessage{Type: daemonapi.MessageCollect}, 1},
		{"resend with an fd", daemonapi.ControlMessage{Type: daemonapi.MessageResend, MountID: "m1"}, 1},
		{"resend of a bad mount id", daemonapi.ControlMessage{Type: daemonapi.MessageResend, MountID: "a/b"}, 0},
		{"stderr without an fd", daemonapi.ControlMessage{Type: daemonapi.MessageStderr}, 0},
		{"stderr with two fds", daemonapi.ControlMessage{Type: daemonapi.MessageStderr}, 2},
		{"resume of a bad mount id", daemonapi.ControlMessage{Type: daemonapi.MessageAttach, MountID: "../x", InitRequest: st.Request, InitReply: st.Reply}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.msg.Seq = 77
			// The worker is sent read ends; the test keeps the write
			// ends, which tell whether any copy of a read end is open.
			var fds, writeEnds []int
			for range tc.fds {
				r, w := rawPipe(t)
				fds = append(fds, r)
				writeEnds = append(writeEnds, w)
			}
			b, err := json.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			if _, _, err := conn.WriteMsgUnix(b, oob, nil); err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				unix.Close(fd)
			}
			reply := readMessage(t, conn)
			if reply.Seq != 77 || reply.Error == nil || reply.Error.Code != daemonapi.CodeInvalidArgument {
				t.Errorf("reply = %+v, want an invalid argument error for seq 77", reply)
			}
			// The worker kept no copy of what it refused.
			for _, w := range writeEnds {
				if !readersGone(t, w) {
					t.Error("the refused packet's fd is still open in the worker")
				}
				unix.Close(w)
			}
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.attached) != 0 || len(h.resent) != 0 || len(h.fds) != 0 {
		t.Errorf("refused requests reached the worker: attached %v, resent %v, fds %v", h.attached, h.resent, h.fds)
	}
}

func TestReplaceStderr(t *testing.T) {
	h := newFailoverHandler(t)
	c := dial(t, startControl(t, h))
	r, w := pipe(t)
	if err := c.ReplaceStderr(testContext(t), w); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	fd, ok := h.fds["stderr"]
	h.mu.Unlock()
	if !ok {
		t.Fatal("the worker got no fd")
	}
	if _, err := unix.Write(fd, []byte("dump")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	if n, err := unix.Read(r, got); err != nil || string(got[:n]) != "dump" {
		t.Errorf("the worker's new stderr is not the pipe: read %q, %v", got[:n], err)
	}
	if err := c.ReplaceStderr(testContext(t), -1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReplaceStderr of a closed fd: %v, want invalid argument", err)
	}
	c2 := dial(t, startControl(t, closingHandler))
	if err := c2.ReplaceStderr(testContext(t), w); !errdefs.IsNotImplemented(err) {
		t.Errorf("stderr to a handler without ReplaceStderr: %v, want not implemented", err)
	}
}
