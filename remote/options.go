package remote

import (
	"cmp"
	"time"
)

// Defaults used when an Options field is left zero.
const (
	DefaultUserAgent      = "lazyfs"
	DefaultRequestTimeout = time.Minute
	DefaultHostsTTL       = time.Minute
	// DefaultReadTimeout bounds one read (a FUSE READ's fetch), retries
	// included: long enough to ride out a registry restart, short enough
	// that an application sees an error rather than a hang.
	DefaultReadTimeout = 30 * time.Second
	// DefaultBackoffMin is small: a reset or a 5xx from one backend of a
	// registry is usually gone on the next connection, and a registry
	// that is really down trips the circuit breaker, which does the
	// holding back.
	DefaultBackoffMin = 5 * time.Millisecond
	DefaultBackoffMax = 2 * time.Second
	// DefaultHedgeMin is a floor for hosts answering in a millisecond or
	// two (loopback, a registry on the LAN), whose 90th percentile is
	// mostly scheduling noise; from a registry across a network the
	// delays follow its latency. A hedge to so fast a host costs little.
	DefaultHedgeMin         = 5 * time.Millisecond
	DefaultHedgeMax         = time.Second
	DefaultHedgeFactor      = 1.5
	DefaultMaxHedges        = 2
	DefaultBreakerThreshold = 10
	DefaultBreakerProbeMin  = 100 * time.Millisecond
	DefaultBreakerProbeMax  = time.Second
	// DefaultMaxRequestsPerHost is well above what chunks' scheduler sends
	// one registry at once, so that its own per-registry limit (and
	// priorities) decide; this one bounds hedges and readers beyond it.
	DefaultMaxRequestsPerHost = 64
)

// Options configures a Resolver.
type Options struct {
	// HostsDir is the hosts.toml directory in containerd's layout
	// (e.g. "/etc/containerd/certs.d"). Empty means built-in defaults only.
	HostsDir string
	// Credentials returns the username and secret for a registry host,
	// or empty strings for anonymous access. It is called when a registry
	// asks for authentication. Nil means anonymous only.
	Credentials func(host string) (string, string, error)
	// UserAgent is sent with every request unless hosts.toml sets one.
	UserAgent string
	// RequestTimeout bounds one HTTP request to one host, body included;
	// ReadTimeout, when shorter, bounds it too.
	RequestTimeout time.Duration
	// HostsTTL is how often the hosts.toml files of a registry are looked
	// at (stat only); the hosts, their HTTP connections and their cached
	// tokens are built again only when one changed.
	HostsTTL time.Duration

	// ReadTimeout is the one deadline of a read (ReadAt) or a size lookup
	// whose ctx has none: every retry, hedge and backoff fits in it. The
	// worker caps it by the kernel's FUSE request timeout.
	ReadTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff (with full
	// jitter) between retries from the second on (the first goes out at
	// once, unless after a 429); a 429's Retry-After is honoured when
	// longer.
	BackoffMin, BackoffMax time.Duration
	// HedgeMin, HedgeMax and HedgeFactor derive the hedge delays from a
	// host's recent requests: HedgeFactor × the 90th percentile of their
	// time to an answer (status and headers) for a request not answered
	// yet, and of their whole duration for one receiving its body, within
	// the bounds (1.5 by default: a request half again as slow as 9 in 10
	// recent ones is rarely just slow); MaxHedges is how many extra
	// requests may race a stalled one (negative: none).
	HedgeMin, HedgeMax time.Duration
	HedgeFactor        float64
	MaxHedges          int
	// BreakerThreshold is how many transient failures in a row open a
	// host's circuit breaker; BreakerProbeMin and BreakerProbeMax bound
	// the interval between probes while it is open.
	BreakerThreshold                 int
	BreakerProbeMin, BreakerProbeMax time.Duration
	// RedirectTTL is how long a blob's redirect target is used directly
	// (until then, or until it fails).
	RedirectTTL time.Duration
	// MaxRequestsPerHost bounds the requests (hedges included) in flight
	// to one host from this resolver; more wait for a slot, within their
	// read's deadline.
	MaxRequestsPerHost int
}

func (o Options) withDefaults() Options {
	o.UserAgent = cmp.Or(o.UserAgent, DefaultUserAgent)
	o.RequestTimeout = positiveOr(o.RequestTimeout, DefaultRequestTimeout)
	o.HostsTTL = positiveOr(o.HostsTTL, DefaultHostsTTL)
	o.ReadTimeout = positiveOr(o.ReadTimeout, DefaultReadTimeout)
	o.BackoffMin = positiveOr(o.BackoffMin, DefaultBackoffMin)
	o.BackoffMax = positiveOr(o.BackoffMax, DefaultBackoffMax)
	o.HedgeMin = positiveOr(o.HedgeMin, DefaultHedgeMin)
	o.HedgeMax = positiveOr(o.HedgeMax, DefaultHedgeMax)
	o.HedgeFactor = positiveOr(o.HedgeFactor, DefaultHedgeFactor)
	// 0 means the default; a negative value, no hedge.
	if o.MaxHedges == 0 {
		o.MaxHedges = DefaultMaxHedges
	}
	o.MaxHedges = max(o.MaxHedges, 0)
	o.BreakerThreshold = positiveOr(o.BreakerThreshold, DefaultBreakerThreshold)
	o.BreakerProbeMin = positiveOr(o.BreakerProbeMin, DefaultBreakerProbeMin)
	o.BreakerProbeMax = positiveOr(o.BreakerProbeMax, DefaultBreakerProbeMax)
	o.RedirectTTL = positiveOr(o.RedirectTTL, DefaultRedirectTTL)
	o.MaxRequestsPerHost = positiveOr(o.MaxRequestsPerHost, DefaultMaxRequestsPerHost)
	return o
}

// positiveOr is v, or def when v is not positive (unset).
func positiveOr[T int | time.Duration | float64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
