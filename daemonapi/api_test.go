package daemonapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/daemonapi"
)

const (
	testWorker  = "w1"
	layerDigest = "sha256:0f4a1d5b2e9c8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070"
	tocDigest   = "sha256:1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f00f"
)

// fakeBackend records what reaches it and answers what the test set.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string
	ctxs  []context.Context

	info    daemonapi.DaemonInfo
	layer   daemonapi.LayerInfo
	err     error
	block   chan struct{} // LoadLayer waits for it when set
	entered chan struct{} // LoadLayer closes it when entered (if set)
}

func (b *fakeBackend) record(ctx context.Context, call string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
	b.ctxs = append(b.ctxs, ctx)
	return b.err
}

func (b *fakeBackend) recorded() ([]string, []context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...), append([]context.Context(nil), b.ctxs...)
}

func (b *fakeBackend) Info(ctx context.Context) (daemonapi.DaemonInfo, error) {
	return b.info, b.record(ctx, "info")
}

func (b *fakeBackend) LoadLayer(ctx context.Context, req daemonapi.LoadLayerRequest) (daemonapi.LayerInfo, error) {
	if b.entered != nil {
		close(b.entered)
	}
	if b.block != nil {
		<-b.block
	}
	b2, _ := json.Marshal(req)
	return b.layer, b.record(ctx, "load "+string(b2))
}

func (b *fakeBackend) Detach(ctx context.Context, mountID string) error {
	return b.record(ctx, "detach "+mountID)
}

func (b *fakeBackend) Shutdown(ctx context.Context) error {
	return b.record(ctx, "shutdown")
}

var fakeMetrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "# TYPE lazyfs_test counter\nlazyfs_test 1\n")
})

// startAPI serves b on a fresh socket until the test ends; it returns a
// client and the socket path.
func startAPI(t *testing.T, b daemonapi.Backend) (*daemonapi.Client, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(testContext(t))
	path := socketPath(t, "api.sock")
	served := make(chan error, 1)
	go func() {
		served <- daemonapi.ListenAndServe(ctx, path, daemonapi.NewServer(b, fakeMetrics, daemonapi.WithWorkerID(testWorker)))
	}()
	c := daemonapi.NewClient(path, testWorker)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})
	waitForSocket(t, c, served)
	return c, path
}

func waitForSocket(t *testing.T, c *daemonapi.Client, served chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.Health(testContext(t))
		if err == nil {
			return
		}
		select {
		case err := <-served:
			t.Fatalf("ListenAndServe: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("api never came up: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawHTTP is a plain HTTP client for the socket, to see statuses and
// bodies as they are.
func rawHTTP(t *testing.T, path string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func validRequest() daemonapi.LoadLayerRequest {
	return daemonapi.LoadLayerRequest{
		MountID:     "42",
		ImageRef:    "registry.example:5000/library/alpine:3.20-esgz",
		LayerDigest: layerDigest,
		TOCDigest:   tocDigest,
		Mountpoint:  "/var/lib/lazyfs/snapshots/42/fs",
	}
}

func TestAPIRoundTrips(t *testing.T) {
	checkLeaks(t)
	start := time.Date(2026, 11, 27, 5, 0, 0, 123, time.UTC)
	b := &fakeBackend{
		info: daemonapi.DaemonInfo{
			ID: testWorker, PID: 4242, Version: "v0.1.0", State: daemonapi.DaemonRunning, StartTime: start,
			Mounts: []daemonapi.MountInfo{{
				ID: "42", LayerDigest: layerDigest, ImageRef: "r/a:1", TOCDigest: tocDigest,
				Mountpoint: "/m/42", State: daemonapi.MountServing,
			}},
		},
		layer: daemonapi.LayerInfo{MountID: "42", LayerDigest: layerDigest, TOCDigest: tocDigest, BlobSize: 1 << 40, Entries: 12345},
	}
	c, _ := startAPI(t, b)
	ctx := testContext(t)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info, b.info) {
		t.Errorf("Info() = %+v, want %+v", info, b.info)
	}

	layer, err := c.LoadLayer(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	if layer != b.layer {
		t.Errorf("LoadLayer() = %+v, want %+v", layer, b.layer)
	}

	if err := c.Detach(ctx, "sha256:abc"); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	metrics, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), "lazyfs_test 1") {
		t.Errorf("Metrics() = %q", metrics)
	}

	req, _ := json.Marshal(validRequest())
	calls, ctxs := b.recorded()
	want := []string{"info", "load " + string(req), "detach sha256:abc", "shutdown"}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("backend saw %q, want %q", calls, want)
	}
	// Every request's ctx names the worker; a load request's also the
	// layer it is about.
	for i, ctx := range ctxs {
		if got := log.G(ctx).Data["worker_id"]; got != testWorker {
			t.Errorf("%s: worker_id = %v", calls[i], got)
		}
	}
	fields := log.G(ctxs[1]).Data
	for k, v := range map[string]string{"mount_id": "42", "layer_digest": layerDigest, "image_ref": validRequest().ImageRef, "mountpoint": validRequest().Mountpoint} {
		if fields[k] != v {
			t.Errorf("load layer ctx: %s = %v, want %v", k, fields[k], v)
		}
	}
	if got := log.G(ctxs[2]).Data["mount_id"]; got != "sha256:abc" {
		t.Errorf("detach ctx: mount_id = %v", got)
	}
}
