package daemonapi_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

func TestListenAndServe(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	path := socketPath(t, "api.sock")
	// A stale socket from an earlier run is replaced.
	if _, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"}); err == nil {
		t.Fatal("listening in a missing directory succeeded")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	b := &fakeBackend{block: make(chan struct{}), entered: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- daemonapi.ListenAndServe(ctx, path, daemonapi.NewServer(b, nil)) }()
	c := daemonapi.NewClient(path, testWorker)
	defer c.Close()
	waitForSocket(t, c, served)
	assertMode(t, path, fs.ModeSocket|0o600)

	// Without a metrics handler, /metrics is not found.
	if _, err := c.Metrics(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("Metrics() = %v, want not found", err)
	}

	// A request in flight when serving stops is let finish.
	loaded := make(chan error, 1)
	go func() {
		_, err := c.LoadLayer(context.Background(), validRequest())
		loaded <- err
	}()
	<-b.entered
	cancel()
	// Shutdown has begun once the listener is closed, which removes the
	// socket file; from then on no new connection is accepted while the
	// request in flight still holds the server.
	waitSocketGone(t, path)
	fresh := daemonapi.NewClient(path, testWorker)
	defer fresh.Close()
	if err := fresh.Health(context.Background()); !errdefs.IsUnavailable(err) {
		t.Errorf("Health() on a new connection during shutdown = %v, want unavailable", err)
	}
	select {
	case err := <-served:
		t.Fatalf("ListenAndServe returned (%v) while a request was in flight", err)
	default:
	}
	close(b.block)
	if err := <-loaded; err != nil {
		t.Errorf("LoadLayer in flight during shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("ListenAndServe() = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after ListenAndServe returned: %v", err)
	}
	if err := c.Health(context.Background()); !errdefs.IsUnavailable(err) {
		t.Errorf("Health() after stop = %v, want unavailable", err)
	}
}

func TestListenAndServeRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(shortDir(t), "api.sock")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	err := daemonapi.ListenAndServe(testContext(t), path, daemonapi.NewServer(&fakeBackend{}, nil))
	if !errdefs.IsAlreadyExists(err) {
		t.Errorf("ListenAndServe() over a directory = %v, want already exists", err)
	}
}

// waitSocketGone waits until the socket file at path is removed, which a
// closing listener does.
func waitSocketGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s still there 5s after serving was stopped", path)
		}
		time.Sleep(time.Millisecond)
	}
}
