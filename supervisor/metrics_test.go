package supervisor

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// fakeMetricsAPI serves a worker's GET /metrics on a unix socket: the page
// it holds, or a 500 when it holds "".
type fakeMetricsAPI struct {
	sock string
	page atomic.Value // string
}

func newFakeMetricsAPI(t *testing.T) *fakeMetricsAPI {
	t.Helper()
	// sun_path is 108 bytes: not under t.TempDir.
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeMetricsAPI{sock: filepath.Join(dir, "api.sock")}
	f.page.Store("")
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := f.page.Load().(string)
		if r.URL.Path != daemonapi.PathMetrics || page == "" {
			http.Error(w, `{"code":"internal","message":"no metrics"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte(page))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

// TestWorkerMetricsScrape: the snapshotter's /metrics shows each worker's
// series labelled with its id; a worker that answers an error or a page
// that does not parse keeps its last values (the page never fails), and
// a worker that is gone keeps what it last served.
func TestWorkerMetricsScrape(t *testing.T) {
	api := newFakeMetricsAPI(t)
	w := fakeWorker("w")
	w.api = daemonapi.NewClient(api.sock, "w")
	s := &Supervisor{ctx: context.Background(), workers: map[string]*worker{"w": w}, metrics: newMetricsStore()}
	gather := func(what string, want float64) {
		t.Helper()
		fams, err := s.WorkerMetrics().Gather()
		if err != nil {
			t.Fatalf("%s: Gather: %v", what, err)
		}
		if got, ok := valueOf(fams, "lazyfs_chunk_fetches_total", "w"); !ok || got != want {
			t.Errorf("%s: lazyfs_chunk_fetches_total{worker_id=w} = %v (present %v), want %v", what, got, ok, want)
		}
	}
	api.page.Store(workerPage(5, 1, 10, 3, 2))
	gather("first scrape", 5)
	api.page.Store("")
	gather("a worker answering an error", 5)
	api.page.Store("lazyfs_chunk_fetches_total{ 9\n")
	gather("a page that does not parse", 5)
	api.page.Store(workerPage(7, 1, 10, 3, 2))
	gather("a newer scrape", 7)

	close(w.exited)
	api.page.Store(workerPage(9, 1, 10, 3, 2))
	gather("a worker that exited", 7)
}
