package chunks

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestOutageLoggedOncePerOutage guards the outage tracker: with the source
// down, every read of data not cached fails with ErrUnavailable (class
// errdefs.ErrUnavailable, which lazyfs counts), but the layer's log gets
// one line per outage, not one per read; a request that succeeds ends the
// outage, and the next failure starts (and logs) a new one.
func TestOutageLoggedOncePerOutage(t *testing.T) {
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))

	l := buildLayer(t, []testFile{{"f", fileData(50_000, 3)}})
	file := l.files["f"]
	var down atomic.Bool
	errDown := fmt.Errorf("dial tcp: connection refused")
	src := &memSource{blob: l.blob, hook: func(context.Context, int, []byte, int64) error {
		if down.Load() {
			return errDown
		}
		return nil
	}}
	// No memory cache: every read goes to the source.
	r := NewReader(src, Options{LayerDigest: testLayerDigest, MemoryCacheSize: -1})
	read := func() error {
		p := make([]byte, 100)
		_, err := r.ReadAt(ctx, file, p, 0)
		return err
	}
	count := func(msg string) int {
		n := 0
		for _, e := range hook.AllEntries() {
			if e.Message == msg {
				n++
			}
		}
		return n
	}
	const downMsg = "registry unreachable: reads of data not cached fail until it is back"
	const upMsg = "registry reachable again"

	down.Store(true)
	for i := range 3 {
		err := read()
		if !errors.Is(err, ErrUnavailable) || !errdefs.IsUnavailable(err) || !errors.Is(err, errDown) {
			t.Fatalf("read %d with the source down: %v; want ErrUnavailable wrapping the source's error", i, err)
		}
	}
	if n := count(downMsg); n != 1 {
		t.Errorf("outage logged %d times for 3 failed reads, want once", n)
	}
	down.Store(false)
	if err := read(); err != nil {
		t.Fatalf("read with the source back: %v", err)
	}
	if err := read(); err != nil {
		t.Fatalf("second read with the source back: %v", err)
	}
	if n := count(upMsg); n != 1 {
		t.Errorf("end of the outage logged %d times, want once", n)
	}
	// The end names how many requests the outage failed: one per read.
	for _, e := range hook.AllEntries() {
		if e.Message == upMsg && e.Data["failed_requests"] != int64(3) {
			t.Errorf("end of the outage logged %v failed requests, want 3", e.Data["failed_requests"])
		}
	}
	down.Store(true)
	if err := read(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read with the source down again: %v", err)
	}
	if n := count(downMsg); n != 2 {
		t.Errorf("outages logged %d times for two outages, want twice", n)
	}
}

// TestCancelledReadIsNoOutage guards the ctx check: a read the kernel
// interrupted is not the registry's failure.
func TestCancelledReadIsNoOutage(t *testing.T) {
	l := buildLayer(t, []testFile{{"f", fileData(5_000, 4)}})
	ctx, cancel := context.WithCancel(context.Background())
	src := &memSource{blob: l.blob, hook: func(context.Context, int, []byte, int64) error {
		cancel()
		return context.Canceled
	}}
	r := NewReader(src, Options{LayerDigest: testLayerDigest})
	_, err := r.ReadAt(ctx, l.files["f"], make([]byte, 10), 0)
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("interrupted read: %v; want an error that is not ErrUnavailable", err)
	}
	r.outage.mu.Lock()
	defer r.outage.mu.Unlock()
	if r.outage.down {
		t.Error("an interrupted read started an outage")
	}
}
