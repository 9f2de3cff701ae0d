package mgmtapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func testBackend(t *testing.T) *fakeBackend {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	mount := Mount{ID: "7", LayerDigest: "sha256:11", ImageRef: "r/app:v1", WorkerID: "img-a", State: "serving", Mountpoint: "/x/7/fs", FUSENotifyResend: true}
	return &fakeBackend{
		workers: []Worker{
			{ID: "img-a", PID: 100, Mode: "per-image", State: "serving", StartTime: start, Restarts: 2,
				LastExit: &Exit{PID: 99, Time: start, Cause: "killed", Detail: "killed by SIGKILL"},
				RSSBytes: 12 << 20, LogFile: "/log/daemons/img-a.log", FUSENotifyResend: true, Mounts: []Mount{mount}},
			{ID: "img-old", PID: 200, Mode: "per-image", State: "serving", Mounts: []Mount{{ID: "9", State: "unheld"}}},
		},
		mounts: []Mount{mount},
		status: Status{Version: "v1", Health: "ok", Mode: "per-image", Workers: 2, WorkersByState: map[string]int{"serving": 2}, Mounts: 1,
			Kernel: Kernel{Release: "6.18.0", FUSENotifyResend: true}},
		logDir: t.TempDir(),
	}
}

// TestRoundTrips checks that every answer arrives as the backend gave it.
func TestRoundTrips(t *testing.T) {
	b := testBackend(t)
	c, _ := serve(t, b)
	ctx := context.Background()

	ws, err := c.Workers(ctx)
	if err != nil || !reflect.DeepEqual(ws, b.workers) {
		t.Errorf("Workers = %+v, %v; want %+v", ws, err, b.workers)
	}
	w, err := c.Worker(ctx, "img-a")
	if err != nil || !reflect.DeepEqual(w, b.workers[0]) {
		t.Errorf("Worker = %+v, %v; want %+v", w, err, b.workers[0])
	}
	ms, err := c.Mounts(ctx)
	if err != nil || !reflect.DeepEqual(ms, b.mounts) {
		t.Errorf("Mounts = %+v, %v", ms, err)
	}
	st, err := c.Status(ctx)
	if err != nil || !reflect.DeepEqual(st, b.status) {
		t.Errorf("Status = %+v, %v; want %+v", st, err, b.status)
	}
	res, err := c.Restart(ctx, "img-a")
	if want := (Restart{ID: "img-a", OldPID: 100, NewPID: 101, Duration: 42 * time.Millisecond}); err != nil || res != want {
		t.Errorf("Restart = %+v, %v; want %+v", res, err, want)
	}
}

// TestEmptyListsAreLists: scripts get [] rather than null.
func TestEmptyListsAreLists(t *testing.T) {
	c, _ := serve(t, &fakeBackend{logDir: t.TempDir()})
	for _, path := range []string{pathWorkerList, PathMounts} {
		resp, err := c.send(context.Background(), http.MethodGet, path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("GET %s = %q, want []", path, body)
		}
	}
}

// TestErrorClasses checks that errors keep their errdefs class across the
// wire and name the operation and the socket.
func TestErrorClasses(t *testing.T) {
	b := testBackend(t)
	c, _ := serve(t, b)
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func() error
		class error
		text  string
	}{
		{"unknown worker", func() error { _, err := c.Worker(ctx, "nope"); return err }, errdefs.ErrNotFound, "inspect worker nope: worker nope: not found"},
		{"restart refused", func() error { _, err := c.Restart(ctx, "img-old"); return err }, errdefs.ErrFailedPrecondition, "no held connection"},
		{"invalid id", func() error { _, err := c.Worker(ctx, ".."); return err }, errdefs.ErrInvalidArgument, `".." is not a worker id`},
		{"no log", func() error { return c.Logs(ctx, "img-a", LogOptions{Tail: 1}, io.Discard) }, errdefs.ErrNotFound, "no log at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v is not %v", err, tc.class)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), c.Socket()) {
				t.Errorf("error %q lacks %q or the socket", err, tc.text)
			}
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.restarts) != 0 {
		t.Errorf("a refused restart reached the backend as done: %v", b.restarts)
	}
}

// TestBadRequests sends what the client never would: each gets a JSON
// error of the right class and never reaches the backend.
func TestBadRequests(t *testing.T) {
	b := testBackend(t)
	c, _ := serve(t, b)
	tests := []struct {
		method, path string
		class        error
	}{
		{http.MethodGet, "/api/v1/nothing", errdefs.ErrNotFound},
		{http.MethodDelete, PathStatus, errdefs.ErrNotImplemented},
		{http.MethodGet, PathWorkers + "img-a/restart", errdefs.ErrNotImplemented},
		{http.MethodGet, PathWorkers + "img-a/logs?tail=-3", errdefs.ErrInvalidArgument},
		{http.MethodGet, PathWorkers + "img-a/logs?tail=x", errdefs.ErrInvalidArgument},
		{http.MethodGet, PathWorkers + "img-a/logs?follow=maybe", errdefs.ErrInvalidArgument},
		{http.MethodGet, PathWorkers + "a%5Cb", errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, err := c.send(context.Background(), tc.method, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if err := readError(resp); !errors.Is(err, tc.class) {
				t.Errorf("status %d, error %v; want class %v", resp.StatusCode, err, tc.class)
			}
		})
	}
	if len(b.restarts) != 0 {
		t.Errorf("restarts reached the backend: %v", b.restarts)
	}
}

// TestUnreachable: no snapshotter listening is ErrUnavailable, naming the
// socket, whether the socket is missing or stale.
func TestUnreachable(t *testing.T) {
	dir := shortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	for _, path := range []string{filepath.Join(dir, "missing.sock"), stale} {
		_, err := NewClient(path).Status(context.Background())
		if !errors.Is(err, ErrUnreachable) || !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want unavailable naming the socket", path, err)
		}
	}
}

// TestSocketMode: only root may talk to the API.
func TestSocketMode(t *testing.T) {
	c, _ := serve(t, testBackend(t))
	fi, err := os.Stat(c.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestLogsOverTheWire reads a tail, the whole log, and follows it until the
// client stops, and until the server closes.
func TestLogsOverTheWire(t *testing.T) {
	b := testBackend(t)
	c, srv := serve(t, b)
	path := filepath.Join(b.logDir, "img-a.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.Logs(context.Background(), "img-a", LogOptions{Tail: 2}, &out); err != nil || out.String() != "two\nthree\n" {
		t.Errorf("tail 2 = %q, %v", out.String(), err)
	}
	out.Reset()
	if err := c.Logs(context.Background(), "img-a", LogOptions{Tail: -1}, &out); err != nil || out.String() != "one\ntwo\nthree\n" {
		t.Errorf("whole log = %q, %v", out.String(), err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followed syncBuffer
	done := make(chan error, 1)
	go func() { done <- c.Logs(ctx, "img-a", LogOptions{Tail: 1, Follow: true}, &followed) }()
	waitFor(t, "the tail", func() bool { return followed.String() == "three\n" })
	appendLog(t, path, "four\n")
	waitFor(t, "an appended line", func() bool { return followed.String() == "three\nfour\n" })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow stopped by its ctx: %v", err)
	}

	// The server closing ends a follow at once, not after its grace.
	go func() { done <- c.Logs(context.Background(), "img-a", LogOptions{Tail: 0, Follow: true}, io.Discard) }()
	start := time.Now()
	if err := srv.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a follow outlived the server")
	}
	if d := time.Since(start); d > shutdownGrace/2 {
		t.Errorf("close took %v with a follow open", d)
	}
}
