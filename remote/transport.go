package remote

import (
	"fmt"
	"net/http"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// DefaultTransportAttempts is how many times a RetryTransport sends one
// request at most.
const DefaultTransportAttempts = 6

// RetryTransport retries the idempotent requests (GET and HEAD without a
// body) of clients that remote does not drive itself — containerd's
// resolver and fetcher in `snapshotterctl image pull` — with the same rules
// as Blob.ReadAt (retryWait): on resets and other failed round trips, 5xx,
// 408 and 429 (honouring Retry-After), the first retry at once (after a
// 429 a backoff), then exponential backoff with full jitter, until
// Attempts requests were sent or the request's ctx ends. A body cut short
// after the headers cannot be retried here: the caller sees it (containerd
// then fails the digest check of what it read).
type RetryTransport struct {
	Base     http.RoundTripper
	Attempts int
	Backoff  Options // BackoffMin and BackoffMax are used
}

// NewRetryTransport wraps base (nil: http.DefaultTransport).
func NewRetryTransport(base http.RoundTripper) *RetryTransport {
	if base == nil {
		base = http.DefaultTransport
	}
	return &RetryTransport{Base: base, Attempts: DefaultTransportAttempts, Backoff: Options{}.withDefaults()}
}

func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Method != http.MethodGet && req.Method != http.MethodHead) || (req.Body != nil && req.Body != http.NoBody) {
		return t.Base.RoundTrip(req)
	}
	ctx := req.Context()
	for n := 0; ; n++ {
		resp, err := t.Base.RoundTrip(req)
		var wait time.Duration
		cause := ""
		switch {
		case err != nil:
			cause = reasonNetwork
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
			cause = statusReason(resp.StatusCode)
			wait = retryAfter(resp.Header, time.Now())
		}
		if cause == "" || n+1 >= t.Attempts || ctx.Err() != nil {
			return resp, err
		}
		if resp != nil {
			closeBody(resp)
		}
		metrics.RegistryRetries.WithLabelValues(req.URL.Host, cause).Inc()
		wait = max(wait, retryWait(&t.Backoff, n, cause))
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("%s %s: %w (while waiting to retry after %s)", req.Method, req.URL.Redacted(), ctx.Err(), cause)
		}
	}
}
