package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// faultFixture is a blob in a registry behind a fault-injecting proxy.
type faultFixture struct {
	proxy *faultproxy.Proxy
	blob  []byte
	b     *Blob
}

func startFaulty(t *testing.T, popts faultproxy.Options, opts Options) *faultFixture {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	reg := testregistry.New(t, "test/repo")
	blob := testregistry.Noise(256<<10, t.Name())
	d := reg.AddBlob(blob)
	popts.Upstream, _, _ = strings.Cut(reg.Ref("x"), "/")
	p, err := faultproxy.Start(popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	b, err := NewResolver(opts).Blob(ctx, p.Addr()+"/test/repo:latest", d)
	if err != nil {
		t.Fatal(err)
	}
	return &faultFixture{proxy: p, blob: blob, b: b}
}

// readAll reads the blob in 4 KiB ranges from n goroutines and returns
// how many reads failed or returned wrong bytes.
func (f *faultFixture) readAll(t *testing.T, n int) (failed, wrong int) {
	t.Helper()
	ctx := logtest.WithT(context.Background(), t)
	var mu sync.Mutex
	var wg sync.WaitGroup
	const size = 4 << 10
	for g := range n {
		wg.Go(func() {
			buf := make([]byte, size)
			for off := int64(g * size); off < int64(len(f.blob)); off += int64(n * size) {
				_, err := f.b.ReadAt(ctx, buf, off)
				mu.Lock()
				switch {
				case err != nil:
					failed++
					t.Logf("read at %d: %v", off, err)
				case !bytes.Equal(buf, f.blob[off:off+size]):
					wrong++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, wrong
}

func TestRetriesResetsAnd5xx(t *testing.T) {
	f := startFaulty(t, faultproxy.Options{Seed: 7}, quick(Options{ReadTimeout: 10 * time.Second}))
	f.proxy.SetFaults(faultproxy.Faults{Reset: 0.3, Status5xx: 0.1})
	failed, wrong := f.readAll(t, 4)
	c := f.proxy.Counters()
	if failed != 0 || wrong != 0 {
		t.Fatalf("%d reads failed, %d wrong, with %d resets and %d 5xx", failed, wrong, c.Resets, c.Status5xx)
	}
	if c.Resets == 0 || c.Status5xx == 0 {
		t.Fatalf("no faults injected: %+v", c)
	}
}

func TestRetriesBadBodies(t *testing.T) {
	for name, faults := range map[string]faultproxy.Faults{
		"truncated": {Truncate: 0.3},
		"longer":    {Lengthen: 0.3},
		"429":       {TooMany: 0.3},
	} {
		t.Run(name, func(t *testing.T) {
			f := startFaulty(t, faultproxy.Options{Seed: 3}, quick(Options{ReadTimeout: 10 * time.Second}))
			f.proxy.SetFaults(faults)
			if failed, wrong := f.readAll(t, 4); failed != 0 || wrong != 0 {
				t.Fatalf("%d reads failed, %d wrong: %+v", failed, wrong, f.proxy.Counters())
			}
		})
	}
}

// A body longer than the range asked for is refused even when its first
// bytes are the right ones.
func TestLongBodyIsRefused(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{ReadTimeout: 500 * time.Millisecond}))
	f.proxy.SetFaults(faultproxy.Faults{Lengthen: 1})
	_, err := f.b.ReadAt(ctx, make([]byte, 100), 0)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "body length differs from range") {
		t.Fatalf("err = %v, want unavailable naming the length", err)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{ReadTimeout: 5 * time.Second}))
	f.proxy.SetFaults(faultproxy.Faults{TooMany: 1, RetryAfter: time.Second})
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := f.b.ReadAt(ctx, make([]byte, 100), 0)
		done <- err
	}()
	// Once the first 429 is out, the read must wait a second before the
	// next request, whatever its own (50 ms) backoff says.
	for f.proxy.Counters().TooMany == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	f.proxy.SetFaults(faultproxy.Faults{})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("retried after %v, Retry-After said 1 s", el)
	}
}

func TestHedgingBeatsStalls(t *testing.T) {
	f := startFaulty(t, faultproxy.Options{Seed: 5}, quick(Options{ReadTimeout: 3 * time.Second, HedgeMax: 100 * time.Millisecond}))
	f.proxy.SetFaults(faultproxy.Faults{Stall: 0.3, StallFor: 10 * time.Second})
	host := f.proxy.Addr()
	fired0 := testutil.ToFloat64(metrics.RegistryHedgesFired.WithLabelValues(host))
	if failed, wrong := f.readAll(t, 2); failed != 0 || wrong != 0 {
		t.Fatalf("%d reads failed, %d wrong: %+v", failed, wrong, f.proxy.Counters())
	}
	if testutil.ToFloat64(metrics.RegistryHedgesFired.WithLabelValues(host)) == fired0 ||
		testutil.ToFloat64(metrics.RegistryHedgesWon.WithLabelValues(host)) == 0 {
		t.Fatal("no hedge fired or won")
	}
}

// Without hedges a stalled request is only ended by the read's deadline.
func TestNoHedgesStallsFail(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 5}, quick(Options{ReadTimeout: 500 * time.Millisecond, MaxHedges: -1}))
	f.proxy.SetFaults(faultproxy.Faults{Stall: 1, StallFor: 10 * time.Second})
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestBreakerBoundsRequestsWhileDown(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{
		ReadTimeout: time.Second, BreakerThreshold: 5,
		BreakerProbeMin: 100 * time.Millisecond, BreakerProbeMax: 200 * time.Millisecond,
	}))
	f.proxy.SetDown(true)
	before := f.proxy.Counters().Requests
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); err == nil {
					t.Error("read succeeded while the registry was down")
					return
				}
			}
		})
	}
	wg.Wait()
	// 5 failures open it, then one probe per 100-200 ms for 3 s, plus
	// what was in flight when it opened; net/http sends a GET whose reused
	// connection was reset once more on a new one, so each attempt may
	// count twice. Without the breaker it is over 1000.
	if n := f.proxy.Counters().Requests - before; n > 80 {
		t.Fatalf("%d requests in 3 s to a registry that is down", n)
	}
	if !f.b.resolver.breaker(f.proxy.Addr()).isOpen() {
		t.Fatal("breaker not open")
	}
	f.proxy.SetDown(false)
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); err != nil {
		t.Fatalf("registry back, read failed: %v", err)
	}
	if f.b.resolver.breaker(f.proxy.Addr()).isOpen() {
		t.Fatal("breaker still open after a success")
	}
}

func TestGiveUpNamesEverything(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{ReadTimeout: 300 * time.Millisecond}))
	f.proxy.SetFaults(faultproxy.Faults{Status5xx: 1})
	_, err := f.b.ReadAt(ctx, make([]byte, 10), 0)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	for _, s := range []string{"registry " + f.proxy.Addr(), "repository test/repo", "layer " + f.b.Digest().String(), `last status "503 Service Unavailable"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
}

func TestRedirectFollowed(t *testing.T) {
	f := startFaulty(t, faultproxy.Options{Seed: 1, Redirect: true}, quick(Options{}))
	if failed, wrong := f.readAll(t, 2); failed != 0 || wrong != 0 {
		t.Fatalf("%d reads failed, %d wrong", failed, wrong)
	}
	if c := f.proxy.Counters(); c.Redirected == 0 {
		t.Fatalf("nothing served from the redirect address: %+v", c)
	}
}

// Tokens that expire while a reader keeps reading are fetched again,
// never an error.
func TestExpiringTokens(t *testing.T) {
	f := startFaulty(t, faultproxy.Options{Seed: 1, Token: &faultproxy.TokenOptions{TTL: 300 * time.Millisecond, AnnounceTTL: time.Hour}},
		quick(Options{ReadTimeout: 5 * time.Second}))
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if failed, wrong := f.readAll(t, 2); failed != 0 || wrong != 0 {
			t.Fatalf("%d reads failed, %d wrong", failed, wrong)
		}
	}
	if c := f.proxy.Counters(); c.TokensIssued < 2 {
		t.Fatalf("tokens never refreshed: %+v", c)
	}
}

// Corrupt answers refused by the caller's check are fetched again.
func TestVerifiedReadRetriesCorruptBytes(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{ReadTimeout: 5 * time.Second}))
	f.proxy.Script(faultproxy.Flip, faultproxy.Flip)
	want := f.blob[1000:5096]
	verify := func(b []byte) error {
		if !bytes.Equal(b, want) {
			return errors.New("digest mismatch")
		}
		return nil
	}
	buf := make([]byte, len(want))
	if _, err := f.b.ReadAtVerified(ctx, buf, 1000, verify); err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("err = %v, bytes right: %v", err, bytes.Equal(buf, want))
	}
	if c := f.proxy.Counters(); c.Flipped != 2 {
		t.Fatalf("flipped %d answers, want 2", c.Flipped)
	}
	// Without the check the flipped bytes are what the read returns:
	// remote itself cannot tell.
	f.proxy.Script(faultproxy.Flip)
	if _, err := f.b.ReadAt(ctx, buf, 1000); err != nil || bytes.Equal(buf, want) {
		t.Fatalf("unchecked read of a flipped answer: err = %v, bytes right: %v", err, bytes.Equal(buf, want))
	}
}

// When every request out is stalled, the oldest is given up and replaced
// rather than waited on until the read's deadline.
func TestStalledHedgesAreReplaced(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{ReadTimeout: 5 * time.Second, HedgeMax: 50 * time.Millisecond, MaxHedges: 2}))
	f.proxy.SetFaults(faultproxy.Faults{StallFor: time.Minute})
	f.proxy.Script(faultproxy.Stall, faultproxy.Stall, faultproxy.Stall)
	buf := make([]byte, 100)
	if _, err := f.b.ReadAt(ctx, buf, 0); err != nil || !bytes.Equal(buf, f.blob[:100]) {
		t.Fatalf("err = %v (%+v)", err, f.proxy.Counters())
	}
	if c := f.proxy.Counters(); c.Stalls != 3 {
		t.Fatalf("%d stalls, want 3", c.Stalls)
	}
}

// A redirect's target is used directly for later reads, and asked for
// again once it fails.
func TestRedirectCached(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	// No hedges: on a slow machine one would be a second request for a
	// read, and the test counts requests.
	f := startFaulty(t, faultproxy.Options{Seed: 1, Redirect: true}, quick(Options{MaxHedges: -1}))
	buf := make([]byte, 100)
	for i := range 5 {
		if _, err := f.b.ReadAt(ctx, buf, int64(i*100)); err != nil || !bytes.Equal(buf, f.blob[i*100:i*100+100]) {
			t.Fatal(err)
		}
	}
	if c := f.proxy.Counters(); c.Redirects != 1 || c.Redirected != 5 {
		t.Fatalf("%d redirects for 5 reads (%d served redirected), want 1", c.Redirects, c.Redirected)
	}
	// The storage address fails once: the registry is asked again.
	f.proxy.SetFaults(faultproxy.Faults{})
	f.proxy.Script(faultproxy.ServerError)
	if _, err := f.b.ReadAt(ctx, buf, 0); err != nil || !bytes.Equal(buf, f.blob[:100]) {
		t.Fatal(err)
	}
	if c := f.proxy.Counters(); c.Redirects != 2 {
		t.Fatalf("%d redirects after the cached URL failed, want 2", c.Redirects)
	}
}

// Requests beyond MaxRequestsPerHost wait for a slot.
func TestRequestSlotsPerHost(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, quick(Options{MaxRequestsPerHost: 1, ReadTimeout: 300 * time.Millisecond, MaxHedges: -1}))
	release, err := f.b.resolver.acquire(ctx, f.proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); !errdefs.IsUnavailable(err) {
		t.Fatalf("with the only slot taken: %v, want unavailable", err)
	}
	release()
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); err != nil {
		t.Fatalf("slot free: %v", err)
	}
}

// A chunked answer (no Content-Length) that runs past the range is not
// the range either.
func TestChunkedLongBodyIsRefused(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	blob := testregistry.Noise(1000, t.Name())
	d := digest.FromBytes(blob)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-99/%d", len(blob)))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(blob[:100])
		w.(http.Flusher).Flush() // no Content-Length: chunked
		_, _ = w.Write([]byte("more"))
	}))
	defer srv.Close()
	b, err := NewResolver(quick(Options{ReadTimeout: 300 * time.Millisecond})).Blob(ctx, strings.TrimPrefix(srv.URL, "http://")+"/test/repo:x", d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAt(ctx, make([]byte, 100), 0); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "body longer than range") {
		t.Fatalf("err = %v, want unavailable naming the long body", err)
	}
}
