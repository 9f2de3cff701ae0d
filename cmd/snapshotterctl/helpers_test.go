package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// shortDir returns a fresh directory whose socket paths stay well within the
// 108 bytes of sun_path (t.TempDir's paths grow with the test's name).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runCLI runs the command line args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLIContext(logtest.WithT(context.Background(), t), args...)
}

func runCLIContext(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut syncBuffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// syncBuffer is a bytes.Buffer that a command may write while the test reads.
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

// fakeWorker answers a worker's API with fixed info.
type fakeWorker struct{ info daemonapi.DaemonInfo }

func (f fakeWorker) Info(context.Context) (daemonapi.DaemonInfo, error) { return f.info, nil }

func (fakeWorker) LoadLayer(context.Context, daemonapi.LoadLayerRequest) (daemonapi.LayerInfo, error) {
	return daemonapi.LayerInfo{}, errdefs.ErrNotImplemented
}

func (fakeWorker) Detach(context.Context, string) error { return errdefs.ErrNotImplemented }

func (fakeWorker) Shutdown(context.Context) error { return errdefs.ErrNotImplemented }

func workerSocket(runDir, id string) string {
	return filepath.Join(runDir, "workers", id, "api.sock")
}

// startFakeWorker serves info on <runDir>/workers/<id>/api.sock, as a
// worker does, until the test ends.
func startFakeWorker(t *testing.T, runDir string, info daemonapi.DaemonInfo) {
	t.Helper()
	sock := workerSocket(runDir, info.ID)
	ctx, cancel := context.WithCancel(logtest.WithT(context.Background(), t))
	done := make(chan error, 1)
	go func() {
		done <- daemonapi.ListenAndServe(ctx, sock, daemonapi.NewServer(fakeWorker{info}, nil, daemonapi.WithWorkerID(info.ID)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fake worker %s: %v", info.ID, err)
		}
	})
	waitFor(t, "worker "+info.ID+" to listen", func() bool {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// staleWorker leaves a socket file nobody listens on, as a worker that died
// does.
func staleWorker(t *testing.T, runDir, id string) {
	t.Helper()
	sock := workerSocket(runDir, id)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

// hungWorker accepts connections on the worker's socket and never answers.
func hungWorker(t *testing.T, runDir, id string) {
	t.Helper()
	sock := workerSocket(runDir, id)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("hung worker accept: %v", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
}

// tableRows returns the fields of each line of a table, header first.
func tableRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Fields(line))
		}
	}
	return rows
}
