package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/lazyfs/lazyfs/metrics"
)

// attemptError is the failure of one request to one host, with what the
// retry loop needs: why (a metrics cause), the status or symptom to name
// when giving up, and the server's Retry-After.
type attemptError struct {
	cause      string // a reason* constant
	status     string // "503 Service Unavailable", "connection reset", …
	retryAfter time.Duration
	err        error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// transient reports whether a later try of the same request may succeed:
// the errdefs class says so (resets, timeouts, 5xx, 429, bodies that are
// not the range asked for, an unreachable token server).
func transient(err error) bool {
	return errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded)
}

// isAuthFailure reports whether err is a refused or failed authorization:
// retried (credentials and tokens may be renewed meanwhile), but no sign
// of a registry being down.
func isAuthFailure(err error) bool {
	var ae *authError
	return errors.As(err, &ae) || errdefs.IsUnauthorized(err)
}

// outcomeOf tells a breaker what a request's result says about its host.
func outcomeOf(ctx context.Context, err error) int {
	switch {
	case ctx.Err() != nil:
		return outcomeUnknown
	case err != nil && isAuthFailure(err) && !errdefs.IsUnavailable(err):
		return outcomeUp
	case err != nil && transient(err):
		return outcomeTransient
	default:
		return outcomeUp
	}
}

// causeOf names err's cause for metrics and the give-up message.
func causeOf(err error) (cause, status string) {
	if err == nil {
		return reasonNone, "none"
	}
	var ae *attemptError
	if errors.As(err, &ae) {
		return ae.cause, ae.status
	}
	return reasonNetwork, err.Error()
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); 0 if
// absent or unparsable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// retryWait is the wait before try n+1 of a request after try n (0: the
// first) failed for cause (a reason* constant): none after the first
// try, then backoff(n-1). An isolated reset, 5xx or broken body is
// usually gone on the next connection or backend, and waiting first would
// cost a fast registry more than the fault itself (a backoff floor of
// 5 ms is a whole request on loopback). A 429 always waits: the registry
// asked us to slow down (its Retry-After, when longer, is honoured by the
// caller). A registry that keeps failing trips its circuit breaker, which
// does the holding back; until then, from the second retry on, the
// backoff grows.
func retryWait(o *Options, n int, cause string) time.Duration {
	if n == 0 && cause != reason429 {
		return 0
	}
	return backoff(o, max(n-1, 0))
}

// backoff is the n-th backoff (0: the first): exponential from
// BackoffMin up to BackoffMax, with full jitter so that the readers a
// fault hit together do not come back together.
func backoff(o *Options, n int) time.Duration {
	d := o.BackoffMax
	if n < 30 {
		d = min(o.BackoffMin<<n, o.BackoffMax)
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// withRetries runs try on the registry's hosts in order (mirrors first)
// until one succeeds, every host failed for good, or ctx ends. Between
// rounds it backs off; hosts whose circuit breaker is open are skipped,
// and when all are, it waits for a probe slot or for a breaker to close.
// It gives up early when the next wait would end past ctx's deadline, so
// a reader gets its error on time rather than when the deadline hits.
func (b *Blob) withRetries(ctx context.Context, op string, try func(ctx context.Context, h docker.RegistryHost) error) error {
	r := b.resolver
	start := time.Now()
	var last error
	attempts, authRetries := 0, 0
	for round := 0; ; round++ {
		if ctx.Err() != nil {
			return b.giveUp(ctx, op, attempts, start, last)
		}
		hosts, err := r.registryHosts(ctx, b.registry)
		if err != nil {
			return err
		}
		var wait time.Duration
		var wake <-chan struct{}
		permanent, sent := 0, 0
		for _, h := range hosts {
			br := r.breaker(h.Host)
			ok, probe, at, changed := br.allow(time.Now())
			if !ok {
				if d := time.Until(at); wake == nil || d < wait {
					wait, wake = max(d, 0), changed
				}
				if last == nil {
					last = &attemptError{cause: reasonNetwork, status: "circuit open",
						err: fmt.Errorf("%s %s: circuit breaker open: %w", op, b.where(h), errdefs.ErrUnavailable)}
				}
				continue
			}
			sent++
			attempts++
			err := try(ctx, h)
			br.done(time.Now(), probe, outcomeOf(ctx, err))
			if err == nil {
				if b.outage.Swap(false) {
					log.G(ctx).WithFields(log.Fields{"registry": b.registry, "host": h.Host}).Info("registry reachable again")
				}
				return nil
			}
			if ctx.Err() != nil {
				// Cut by the read's own deadline: the failure before
				// says more about the registry, if there was one.
				if last == nil {
					last = err
				}
				return b.giveUp(ctx, op, attempts, start, last)
			}
			last = err
			if isAuthFailure(err) && authRetries == 0 {
				authRetries++
				// containerd's authorizer keeps a failed token fetch
				// (and a handler built from old credentials) for good:
				// the next attempt gets new hosts, so a fresh
				// authorizer asks for credentials and a token again.
				// Once per read: a registry that refuses us is not
				// asked again and again.
				r.dropHosts(b.registry)
			} else if !transient(err) {
				permanent++
				continue
			}
			cause, _ := causeOf(err)
			metrics.RegistryRetries.WithLabelValues(h.Host, cause).Inc()
			var ae *attemptError
			if errors.As(err, &ae) && ae.retryAfter > 0 {
				wait = max(wait, ae.retryAfter)
			}
			log.G(ctx).WithError(err).WithFields(log.Fields{"host": h.Host, "attempt": attempts}).Debug("registry request failed, retrying")
		}
		if permanent == len(hosts) {
			return b.giveUp(ctx, op, attempts, start, last)
		}
		if sent > 0 {
			cause, _ := causeOf(last)
			wait = max(wait, retryWait(&r.opts, round, cause))
			wake = nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return b.giveUp(ctx, op, attempts, start, last)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-wake:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return b.giveUp(ctx, op, attempts, start, last)
		}
	}
}

// giveUp is the error of a read that failed for good: it names registry,
// repository, layer and the last status, keeps the last failure's class,
// and is logged once per layer per outage (until a request succeeds
// again), not once per reader.
func (b *Blob) giveUp(ctx context.Context, op string, attempts int, start time.Time, last error) error {
	_, status := causeOf(last)
	if last == nil {
		last = ctx.Err()
	}
	err := fmt.Errorf("registry %s, repository %s, layer %s: %s failed after %d attempts in %s, last status %q: %w",
		b.registry, b.repo, b.dgst, op, attempts, time.Since(start).Round(time.Millisecond), status, last)
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", err, cerr)
	}
	if errors.Is(err, context.DeadlineExceeded) && !errdefs.IsUnavailable(err) {
		// Out of time is what a registry that does not answer looks like.
		err = fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	metrics.RegistryGiveUps.WithLabelValues(b.registry).Inc()
	if !b.outage.Swap(true) {
		log.G(ctx).WithError(err).WithFields(log.Fields{
			"registry": b.registry, "repository": b.repo, "layer_digest": b.dgst, "last_status": status,
		}).Error("registry read failed after retries; further failures of this layer are not logged until it succeeds again")
	}
	return err
}
