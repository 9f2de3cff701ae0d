package remote

import (
	"bytes"
	"context"
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
	if _, err := f.b.ReadAt(ctx, make([]byte, 10), 0); !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable: the second retry's backoff ends past the deadline", err)
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
