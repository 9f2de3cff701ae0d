package worker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// prioritizedBlob builds an eStargz layer whose 1 MiB prioritized file
// (16 chunks) lies before the prefetch landmark, and another after it.
func prioritizedBlob(t *testing.T) (blob []byte, layer, tocDigest digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, f := range []string{"first.bin", "later.bin"} {
		body := testregistry.Noise(1<<20, f)
		testregistry.WriteTar(t, tw, &tar.Header{Name: f, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime}, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))),
		estargz.WithChunkSize(testregistry.ChunkSize), estargz.WithPrioritizedFiles([]string{"first.bin"}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if blob, err = io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	return blob, digest.FromBytes(blob), b.TOCDigest()
}

// TestDetachStopsPrefetch guards the per-mount lifetime of the prefetch of
// prioritized files: a mount detached while its prefetch waits on the
// registry sends no further request, and the worker's Close returns (its
// prefetch goroutines ended).
func TestDetachStopsPrefetch(t *testing.T) {
	reg := testregistry.New(t, testRepo)
	blob, layer, tocDigest := prioritizedBlob(t)
	reg.AddBlob(blob)
	ctx := logtest.WithT(context.Background(), t)
	w, err := worker.New(ctx, worker.Options{
		ID: "test", Root: t.TempDir(), Resolver: remote.NewResolver(remote.Options{}), Limits: toc.DefaultLimits(),
		// One chunk per request, one request at a time: the prefetch of
		// 16 chunks takes many rounds.
		Chunks:   chunks.Options{MaxRequestSize: 1, Parallel: 1},
		Prefetch: true, FuseReaders: 2, AttachWait: testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := mountFuse(t)
	load(t, w, daemonapi.LoadLayerRequest{MountID: "m1", ImageRef: reg.Ref("v1"), LayerDigest: layer.String(), TOCDigest: tocDigest.String(), Mountpoint: m.dir})
	reg.Hold()
	attach(t, w, "m1", m)
	select {
	case <-reg.Stalled():
	case <-time.After(testTimeout):
		t.Fatal("no prefetch request reached the registry after attach")
	}
	dctx, cancel := testContext(t)
	defer cancel()
	if err := w.Detach(dctx, "m1"); err != nil {
		t.Fatal(err)
	}
	// The request the registry holds is abandoned at once: its slot is
	// given back while the registry still holds it.
	inFlight := metrics.FetchesInFlight.WithLabelValues(chunks.Prefetch.String())
	deadline := time.Now().Add(testTimeout)
	for gaugeValue(t, inFlight) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the detached mount's prefetch request is still in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sent := reg.RangedGets()
	reg.Release()
	closed := make(chan struct{})
	go func() {
		w.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return: a prefetch goroutine outlived its mount")
	}
	if got := reg.RangedGets(); got != sent {
		t.Errorf("%d requests after the mount was detached, want none", got-sent)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
