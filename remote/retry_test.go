package remote

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/lazyfs/lazyfs/internal/faultproxy"
)

// hourBackoff makes any backoff longer than the read's deadline: a read
// that backs off even once gives up at once (withRetries does not start a
// wait that would end past its deadline), so whether a retry waited is
// seen in the read's result, not in its timing.
func hourBackoff() Options {
	// No hedges: the tests count requests.
	return Options{ReadTimeout: 10 * time.Second, BackoffMin: time.Hour, BackoffMax: time.Hour, MaxHedges: -1}
}

// The first retry of a read after an isolated fault goes out at once: a
// backoff floor would cost a fast registry more than the fault.
func TestFirstRetryAtOnce(t *testing.T) {
	for name, fault := range map[string]faultproxy.Fault{
		"5xx":       faultproxy.ServerError,
		"truncated": faultproxy.Truncate,
		"flipped":   faultproxy.Flip,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := logtest.WithT(context.Background(), t)
			f := startFaulty(t, faultproxy.Options{Seed: 1}, hourBackoff())
			f.proxy.Script(fault)
			buf := make([]byte, 4096)
			_, err := f.b.ReadAtVerified(ctx, buf, 100, func(b []byte) error {
				if !bytes.Equal(b, f.blob[100:100+4096]) {
					return errdefs.ErrDataLoss
				}
				return nil
			})
			if err != nil || !bytes.Equal(buf, f.blob[100:100+4096]) {
				t.Fatalf("one %s fault, then no retry before a backoff of an hour: %v (%+v)", name, err, f.proxy.Counters())
			}
		})
	}
}

// Only the first retry skips the backoff: a fault that comes back waits,
// so a failing registry is not asked again and again at once.
func TestSecondRetryBacksOff(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, hourBackoff())
	f.proxy.Script(faultproxy.ServerError, faultproxy.ServerError)
	start := time.Now()
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable: the second retry's backoff ends past the deadline", err)
	}
	// It gives up as soon as it knows, not when its 10 s deadline hits.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v, want at once: the backoff was known to end past the deadline", d)
	}
	if c := f.proxy.Counters(); c.Status5xx != 2 || c.BlobRequests != 3 { // the HEAD, two GETs
		t.Fatalf("%d 503s in %d blob requests, want 2 in 3", c.Status5xx, c.BlobRequests)
	}
}

// A 429 always backs off, even the first time: the registry asked for it.
func TestTooManyRequestsBacksOffAtOnce(t *testing.T) {
	ctx := logtest.WithT(context.Background(), t)
	f := startFaulty(t, faultproxy.Options{Seed: 1}, hourBackoff())
	f.proxy.Script(faultproxy.TooMany) // Retry-After: 0
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable: a 429 is not retried at once", err)
	}
	if c := f.proxy.Counters(); c.TooMany != 1 || c.BlobRequests != 2 {
		t.Fatalf("%d 429s in %d blob requests, want 1 in 2", c.TooMany, c.BlobRequests)
	}
}

// snapshotterctl's RetryTransport follows the same rule: a 5xx is retried
// at once, a 429 only after a backoff.
func TestRetryTransportFirstRetryAtOnce(t *testing.T) {
	p, url := startTransportProxy(t)
	tr := NewRetryTransport(&http.Transport{DisableKeepAlives: true})
	tr.Backoff = hourBackoff().withDefaults()
	get := func(timeout time.Duration) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	p.Script(faultproxy.ServerError)
	if resp, err := get(10 * time.Second); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("one 503, then no retry before a backoff of an hour: %v", err)
	}
	p.Script(faultproxy.TooMany)
	if _, err := get(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after a 429: %v, want the request's deadline passed while backing off", err)
	}
	if c := p.Counters(); c.BlobRequests != 3 {
		t.Fatalf("%d requests, want 3 (503, answer, 429)", c.BlobRequests)
	}
}
