package mgmtapi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
)

// syncBuffer is a bytes.Buffer that one goroutine may write while the test
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or a few seconds passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeBackend answers from fixed data; logs live in logDir.
type fakeBackend struct {
	workers []Worker
	mounts  []Mount
	status  Status
	logDir  string

	mu        sync.Mutex
	restarts  []string
	shutdowns []bool // unmount_all of each shutdown request
}

func (f *fakeBackend) Status(context.Context) (Status, error)    { return f.status, nil }
func (f *fakeBackend) Workers(context.Context) ([]Worker, error) { return f.workers, nil }
func (f *fakeBackend) Mounts(context.Context) ([]Mount, error)   { return f.mounts, nil }

func (f *fakeBackend) Worker(_ context.Context, id string) (Worker, error) {
	for _, w := range f.workers {
		if w.ID == id {
			return w, nil
		}
	}
	return Worker{}, fmt.Errorf("worker %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeBackend) Restart(ctx context.Context, id string) (Restart, error) {
	w, err := f.Worker(ctx, id)
	if err != nil {
		return Restart{}, err
	}
	if len(w.Mounts) > 0 && w.Mounts[0].State == "unheld" {
		return Restart{}, fmt.Errorf("worker %s: mount %s has no held connection: %w", id, w.Mounts[0].ID, errdefs.ErrFailedPrecondition)
	}
	f.mu.Lock()
	f.restarts = append(f.restarts, id)
	f.mu.Unlock()
	return Restart{ID: id, OldPID: w.PID, NewPID: w.PID + 1, Duration: 42 * time.Millisecond}, nil
}

func (f *fakeBackend) Shutdown(_ context.Context, unmountAll bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns = append(f.shutdowns, unmountAll)
	return 4242, nil
}

func (f *fakeBackend) LogPath(_ context.Context, id string) (string, error) {
	return filepath.Join(f.logDir, id+".log"), nil
}

// shortDir returns a fresh directory whose socket paths fit in sun_path
// (t.TempDir's grow with the test's name).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serve runs b's API on a socket and returns a client of it.
func serve(t *testing.T, b *fakeBackend) (*Client, *Server) {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	path := filepath.Join(shortDir(t), "run", "api.sock")
	srv, err := Listen(ctx, path, NewServer(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return NewClient(path), srv
}
