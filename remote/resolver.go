package remote

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// Resolver finds the hosts that serve a registry's blobs and hands out
// Blob handles. It is safe for concurrent use.
type Resolver struct {
	opts Options

	mu       sync.Mutex
	hosts    map[string]hostsEntry // by registry host name as in the ref
	breakers map[string]*breaker   // by host (a mirror or the registry), kept across hosts reloads
	latency  map[string]*latency   // by host, likewise
}

type hostsEntry struct {
	hosts   []docker.RegistryHost
	expires time.Time
}

// NewResolver returns a Resolver configured by opts.
func NewResolver(opts Options) *Resolver {
	return &Resolver{
		opts:     opts.withDefaults(),
		hosts:    make(map[string]hostsEntry),
		breakers: make(map[string]*breaker),
		latency:  make(map[string]*latency),
	}
}

// breaker returns host's circuit breaker.
func (r *Resolver) breaker(host string) *breaker {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.breakers[host]
	if !ok {
		b = newBreaker(host, &r.opts)
		r.breakers[host] = b
	}
	return b
}

// latencyOf returns the recent latencies of host.
func (r *Resolver) latencyOf(host string) *latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.latency[host]
	if !ok {
		l = &latency{}
		r.latency[host] = l
	}
	return l
}

// Blob resolves ref (e.g. "127.0.0.1:5000/library/busybox:latest", a tag
// or digest is allowed but not used) to the hosts that can serve its
// repository and returns a handle for the blob dgst in it. It asks the
// hosts in order for the blob's size (HEAD, or a 1-byte ranged GET where
// HEAD is refused) and fails if none knows it.
func (r *Resolver) Blob(ctx context.Context, ref string, dgst digest.Digest) (*Blob, error) {
	spec, err := reference.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("invalid blob digest %q: %w: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	name := spec.Hostname()
	repo := strings.TrimPrefix(spec.Locator, name+"/")
	if repo == "" || repo == spec.Locator {
		// "busybox:latest" parses with "busybox:latest" as host: refs
		// must be fully qualified, as the CRI labels carry them.
		return nil, fmt.Errorf("image reference %q has no repository after the registry host: %w", ref, errdefs.ErrInvalidArgument)
	}
	b := &Blob{
		resolver: r,
		spec:     spec,
		registry: name,
		repo:     repo,
		dgst:     dgst,
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"image_ref": ref, "layer_digest": dgst}))
	if b.size, err = b.fetchSize(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// registryHosts returns the hosts that may serve blobs of registry name,
// in the order hosts.toml gives (mirrors first, the registry last).
func (r *Resolver) registryHosts(ctx context.Context, name string) ([]docker.RegistryHost, error) {
	now := time.Now()
	r.mu.Lock()
	e, ok := r.hosts[name]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.hosts, nil
	}

	all, err := ConfigureHosts(ctx, HostsOptions{HostsDir: r.opts.HostsDir, Credentials: r.opts.Credentials})(name)
	if err != nil {
		return nil, fmt.Errorf("failed to configure hosts of registry %s: %w", name, err)
	}
	var hosts []docker.RegistryHost
	for _, h := range all {
		if h.Capabilities.Has(docker.HostCapabilityPull) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("registry %s: no host with pull capability configured: %w", name, errdefs.ErrNotFound)
	}

	r.mu.Lock()
	r.hosts[name] = hostsEntry{hosts: hosts, expires: now.Add(r.opts.HostsTTL)}
	r.mu.Unlock()
	return hosts, nil
}
