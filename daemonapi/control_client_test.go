package daemonapi_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
)

func TestAttachInvalidArguments(t *testing.T) {
	path := startControl(t, closingHandler)
	c := dial(t, path)
	r, _ := pipe(t)
	for _, tc := range []struct {
		name    string
		mountID string
		fd      int
	}{
		{"empty mount id", "", r},
		{"slash in mount id", "a/b", r},
		{"dot dot", "..", r},
		{"too long", strings.Repeat("m", daemonapi.MaxMountIDLength+1), r},
		{"negative fd", "m", -1},
		{"closed fd", "m", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: tc.mountID}, tc.fd); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Attach(%q, %d) error = %v, want invalid argument", tc.mountID, tc.fd, err)
			}
		})
	}
	if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); err != nil {
		t.Errorf("Attach after refused ones: %v", err)
	}
}

func TestAttachHonoursContext(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	path := startControl(t, attachFunc(func(ctx context.Context, mountID string, fd int) (failover.InitState, error) {
		if mountID == "slow" {
			<-release
		}
		unix.Close(fd)
		return stateFor(mountID), nil
	}))
	c := dial(t, path)
	r, _ := pipe(t)

	ctx, cancel := context.WithTimeout(testContext(t), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Attach(ctx, daemonapi.AttachRequest{MountID: "slow"}, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Attach() error = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Attach took %v to honour a 50ms deadline", d)
	}
	close(release)
	// The late reply to "slow" must not be taken for the next one's.
	st, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "fast"}, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.Request, stateFor("fast").Request) {
		t.Errorf("Attach(fast) = %q", st.Request)
	}
}

func TestDialControlNoWorker(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	_, err := daemonapi.DialControl(testContext(t), path)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), path) {
		t.Errorf("DialControl() = %v, want unavailable naming %s", err, path)
	}
}
