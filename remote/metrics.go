package remote

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// Failure reasons of registry requests (label "reason" of
// metrics.RegistryRequestFailures), kept few so the series stay few.
const (
	reasonNone      = ""
	reasonNetwork   = "network"    // no HTTP answer: refused, reset, timeout, TLS
	reasonAuth      = "auth"       // authorization failed (token server, challenge)
	reason4xx       = "status_4xx" // unexpected client-error status
	reason5xx       = "status_5xx" // unexpected server-error status
	reasonRange     = "range"      // Range ignored or Content-Range not the one asked for
	reasonShortRead = "short_read" // body ended before the range did
	reason429       = "status_429" // rate limited
	reasonTimeout   = "timeout"    // no (whole) answer in time
	reasonCancelled = "cancelled"  // given up by the caller (a hedge that lost)
	reasonCorrupt   = "corrupt"    // the caller's check refused the bytes
)

// observeRequest records one request's duration and, if it failed, why.
func observeRequest(method string, start time.Time, reason string) {
	metrics.RegistryRequestDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if reason != reasonNone {
		metrics.RegistryRequestFailures.WithLabelValues(reason).Inc()
	}
}

// reasonOf tells why b.do failed to produce a response.
func reasonOf(err error) string {
	var ae *authError
	switch {
	case errors.As(err, &ae):
		return reasonAuth
	case errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, context.Canceled):
		return reasonCancelled
	}
	return reasonNetwork
}

// transportStatus names what happened instead of an HTTP answer, for the
// give-up message.
func transportStatus(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	var ae *authError
	if errors.As(err, &ae) {
		return "authorization failed"
	}
	return "no answer"
}

// observeHost records one blob request of host: its outcome, and for a
// success its bytes and latency.
func observeHost(host string, start time.Time, reason string, n int64) {
	outcome := reason
	if outcome == reasonNone {
		outcome = "ok"
		metrics.RegistryBytes.WithLabelValues(host).Add(float64(n))
		metrics.RegistryLatency.WithLabelValues(host).Observe(time.Since(start).Seconds())
	}
	metrics.RegistryRequests.WithLabelValues(host, outcome).Inc()
}

func statusReason(code int) string {
	if code == http.StatusTooManyRequests {
		return reason429
	}
	if code >= 500 || code == http.StatusRequestTimeout {
		return reason5xx
	}
	return reason4xx
}
