package remote

import (
	"errors"
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
	if errors.As(err, &ae) {
		return reasonAuth
	}
	return reasonNetwork
}

func statusReason(code int) string {
	if code >= 500 {
		return reason5xx
	}
	return reason4xx
}
