package daemonapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
)

// attachFunc makes a function a ControlHandler.
type attachFunc func(ctx context.Context, mountID string, fd int) (failover.InitState, error)

func (f attachFunc) Attach(ctx context.Context, req daemonapi.AttachRequest, fd int) (failover.InitState, error) {
	return f(ctx, req.MountID, fd)
}

// stateFor is the INIT state the test handlers answer for a mount.
func stateFor(mountID string) failover.InitState {
	return failover.InitState{Request: []byte("req:" + mountID), Reply: []byte{0, 1, 2, 0xff, byte(len(mountID))}}
}

// closingHandler answers stateFor after closing the fd it now owns.
var closingHandler = attachFunc(func(_ context.Context, mountID string, fd int) (failover.InitState, error) {
	unix.Close(fd)
	return stateFor(mountID), nil
})

// startControl serves h on a fresh control socket until the test ends.
func startControl(t *testing.T, h daemonapi.ControlHandler) string {
	t.Helper()
	ctx, cancel := context.WithCancel(testContext(t))
	path := socketPath(t, "control.sock")
	l, err := daemonapi.ListenControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- daemonapi.ServeControl(ctx, l, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	return path
}

func dial(t *testing.T, path string) *daemonapi.ControlClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 5*time.Second)
	defer cancel()
	c, err := daemonapi.DialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pipe returns a pipe's ends as raw fds, closed at the end of the test.
func pipe(t *testing.T) (r, w int) {
	t.Helper()
	r, w = rawPipe(t)
	t.Cleanup(func() { unix.Close(r); unix.Close(w) })
	return r, w
}

// rawPipe returns a pipe's ends as raw fds the test must close.
func rawPipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

// readersGone tells whether every copy of a pipe's read end is closed,
// by writing to its write end.
func readersGone(t *testing.T, w int) bool {
	t.Helper()
	_, err := unix.Write(w, []byte{1})
	if err != nil && !errors.Is(err, unix.EPIPE) {
		t.Fatal(err)
	}
	return errors.Is(err, unix.EPIPE)
}

func TestAttachPassesFD(t *testing.T) {
	checkLeaks(t)
	received := make(chan string, 1)
	path := startControl(t, attachFunc(func(_ context.Context, mountID string, fd int) (failover.InitState, error) {
		defer unix.Close(fd)
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return failover.InitState{}, fmt.Errorf("read: %w", err)
		}
		received <- string(buf[:n])
		return stateFor(mountID), nil
	}))
	c := dial(t, path)
	if c.PeerPID() != os.Getpid() {
		t.Errorf("PeerPID() = %d, want this process, %d", c.PeerPID(), os.Getpid())
	}

	r, w := pipe(t)
	if _, err := unix.Write(w, []byte("through the socket")); err != nil {
		t.Fatal(err)
	}
	st, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m1"}, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-received; got != "through the socket" {
		t.Errorf("worker read %q from the fd", got)
	}
	want := stateFor("m1")
	if !bytes.Equal(st.Request, want.Request) || !bytes.Equal(st.Reply, want.Reply) {
		t.Errorf("Attach() = %+v, want %+v", st, want)
	}
	// The caller still owns its fd.
	if _, err := unix.Write(w, []byte("still mine")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Read(r, buf); err != nil || string(buf[:n]) != "still mine" {
		t.Errorf("caller's fd after Attach: read %q, %v", buf[:n], err)
	}
}

func TestAttachErrors(t *testing.T) {
	checkLeaks(t)
	for _, class := range []error{
		errdefs.ErrInvalidArgument,
		errdefs.ErrFailedPrecondition,
		errdefs.ErrNotFound,
		errdefs.ErrAlreadyExists,
		errdefs.ErrInternal,
		errdefs.ErrUnavailable,
		context.DeadlineExceeded,
	} {
		t.Run(class.Error(), func(t *testing.T) {
			path := startControl(t, attachFunc(func(_ context.Context, mountID string, fd int) (failover.InitState, error) {
				return failover.InitState{}, fmt.Errorf("mount %s refused by the test: %w", mountID, class)
			}))
			c := dial(t, path)
			r, w := rawPipe(t)
			defer unix.Close(w)
			_, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m-1"}, r)
			if !errors.Is(err, class) {
				t.Fatalf("Attach() error = %v, want class %v", err, class)
			}
			for _, part := range []string{path, "attach m-1", "mount m-1 refused by the test"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not mention %q", err, part)
				}
			}
			// The worker closed its copy: only ours is left.
			unix.Close(r)
			if !readersGone(t, w) {
				t.Error("the worker kept the fd of a failed attach")
			}
		})
	}
}

func TestAttachConcurrent(t *testing.T) {
	checkLeaks(t)
	path := startControl(t, attachFunc(func(_ context.Context, mountID string, fd int) (failover.InitState, error) {
		// Answer out of order, so that replies must be matched.
		time.Sleep(time.Duration(len(mountID)%3) * 5 * time.Millisecond)
		unix.Close(fd)
		return stateFor(mountID), nil
	}))
	c := dial(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		r, _ := pipe(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("mount-%d%s", i, strings.Repeat("x", i))
			st, err := c.Attach(context.Background(), daemonapi.AttachRequest{MountID: id}, r)
			if err == nil && !bytes.Equal(st.Request, stateFor(id).Request) {
				err = fmt.Errorf("attach %s got the state of %q", id, st.Request)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
