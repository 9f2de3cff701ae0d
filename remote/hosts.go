package remote

import (
	"context"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// HostsOptions say how the hosts of a registry are configured.
type HostsOptions struct {
	// HostsDir is the hosts.toml directory in containerd's layout
	// (<host>/hosts.toml); empty or missing means the defaults.
	HostsDir string
	// PlainHTTP talks http to every registry that no hosts.toml says
	// otherwise of (ctr --plain-http).
	PlainHTTP bool
	// Credentials, if set, answers a registry's authentication challenge.
	Credentials func(host string) (string, string, error)
	// Retry wraps each host's client in a RetryTransport: for callers
	// (containerd's resolver and fetcher) whose requests remote does not
	// send itself. Blob reads retry on their own and need not set it.
	Retry bool
}

// ConfigureHosts returns the hosts of each registry as hosts.toml
// configures them (mirrors first, the registry last): the one configurer of
// the workers' reads and of snapshotterctl's pulls and pushes, so that both
// reach a registry the same way.
func ConfigureHosts(ctx context.Context, opts HostsOptions) docker.RegistryHosts {
	return func(name string) ([]docker.RegistryHost, error) {
		hopts := config.HostOptions{Credentials: opts.Credentials}
		if opts.HostsDir != "" {
			hopts.HostDir = config.HostDirFromRoot(opts.HostsDir)
		}
		// A local test registry speaks http, and containerd's default
		// (https first, then http) would cost a failed TLS handshake
		// before the first request of every new client.
		if local, _ := docker.MatchLocalhost(name); local || opts.PlainHTTP {
			hopts.DefaultScheme = "http"
		}
		hosts, err := config.ConfigureHosts(ctx, hopts)(name)
		if err != nil || !opts.Retry {
			return hosts, err
		}
		for i := range hosts {
			if hosts[i].Client == nil {
				continue
			}
			c := *hosts[i].Client
			c.Transport = NewRetryTransport(c.Transport)
			hosts[i].Client = &c
		}
		return hosts, nil
	}
}
