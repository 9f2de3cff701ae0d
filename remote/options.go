package remote

import "time"

// Defaults used when an Options field is left zero.
const (
	DefaultUserAgent      = "lazyfs"
	DefaultRequestTimeout = time.Minute
	DefaultHostsTTL       = time.Minute
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
	// RequestTimeout bounds one HTTP request to one host, body included,
	// so that a stalled connection fails over to the next host instead of
	// blocking a reader forever.
	RequestTimeout time.Duration
	// HostsTTL is how long the hosts of a registry (and with them their
	// HTTP connections and cached tokens) are reused before hosts.toml is
	// read again, so that an edited hosts.toml takes effect without a
	// restart.
	HostsTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.HostsTTL <= 0 {
		o.HostsTTL = DefaultHostsTTL
	}
	return o
}
