package remote

import (
	"context"
	"fmt"
	"path/filepath"
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
	hosts    map[string]hostsEntry    // by registry host name as in the ref
	breakers map[string]*breaker      // by host (a mirror or the registry), kept across hosts reloads
	latency  map[string]*latency      // by host, likewise
	slots    map[string]chan struct{} // by host: MaxRequestsPerHost tokens
}

type hostsEntry struct {
	hosts   []docker.RegistryHost
	expires time.Time
	stamp   string // hostsStamp when the hosts were configured
}

// NewResolver returns a Resolver configured by opts.
func NewResolver(opts Options) *Resolver {
	return &Resolver{
		opts:     opts.withDefaults(),
		hosts:    make(map[string]hostsEntry),
		breakers: make(map[string]*breaker),
		latency:  make(map[string]*latency),
		slots:    make(map[string]chan struct{}),
	}
}

// acquire waits for one of host's MaxRequestsPerHost request slots, or
// until ctx ends, and returns its release. A slot is held for one request
// only, never while waiting for another, so slots cannot deadlock with
// each other nor with a limit of the caller's (chunks' scheduler).
func (r *Resolver) acquire(ctx context.Context, host string) (func(), error) {
	r.mu.Lock()
	ch, ok := r.slots[host]
	if !ok {
		ch = make(chan struct{}, r.opts.MaxRequestsPerHost)
		r.slots[host] = ch
	}
	r.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
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
	b, err := r.newBlob(ref, dgst)
	if err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"image_ref": ref, "layer_digest": dgst}))
	if b.size, err = b.fetchSize(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// newBlob checks ref and dgst and returns a handle whose size is not known
// yet.
func (r *Resolver) newBlob(ref string, dgst digest.Digest) (*Blob, error) {
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
	return &Blob{
		resolver: r,
		spec:     spec,
		registry: name,
		repo:     repo,
		dgst:     dgst,
	}, nil
}

// registryHosts returns the hosts that may serve blobs of registry name,
// in the order hosts.toml gives (mirrors first, the registry last).
//
// They are built once and kept: each host's HTTP client (its pooled
// connections) and authorizer (its bearer tokens) live as long as the
// Resolver. Every HostsTTL the files that configure the registry are
// looked at (stat only), and the hosts are built again only if one
// changed, so that an edited hosts.toml still takes effect without a
// restart.
func (r *Resolver) registryHosts(ctx context.Context, name string) ([]docker.RegistryHost, error) {
	now := time.Now()
	r.mu.Lock()
	e, ok := r.hosts[name]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.hosts, nil
	}
	stamp := hostsStamp(r.opts.HostsDir, name)
	if ok && stamp == e.stamp {
		r.mu.Lock()
		e.expires = now.Add(r.opts.HostsTTL)
		r.hosts[name] = e
		r.mu.Unlock()
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
	if ok {
		log.G(ctx).WithField("registry", name).Info("hosts.toml changed: registry hosts configured again")
	}

	r.mu.Lock()
	r.hosts[name] = hostsEntry{hosts: hosts, expires: now.Add(r.opts.HostsTTL), stamp: stamp}
	r.mu.Unlock()
	return hosts, nil
}

// dropHosts forgets the hosts of registry name: the next request
// configures them again, with new authorizers.
func (r *Resolver) dropHosts(name string) {
	r.mu.Lock()
	delete(r.hosts, name)
	r.mu.Unlock()
}

// hostsStamp identifies the hosts.toml configuration of registry name
// without reading it: the files and directories containerd's configurer
// would look at (<dir>/<host>, its "_port_" spelling, and _default).
func hostsStamp(dir, name string) string {
	if dir == "" {
		return ""
	}
	var b strings.Builder
	port := name
	if i := strings.LastIndex(name, ":"); i > 0 {
		port = name[:i] + "_" + name[i+1:] + "_"
	}
	for _, d := range []string{dir, filepath.Join(dir, name), filepath.Join(dir, port), filepath.Join(dir, "_default")} {
		for _, p := range []string{d, filepath.Join(d, "hosts.toml")} {
			fmt.Fprintf(&b, "%+v;", stampOf(p))
		}
	}
	return b.String()
}

// BlobOfSize returns a handle for the blob dgst of ref whose size is known
// already (a kept TOC records it): no request is made. A wrong size shows at
// the first read, whose Content-Range names the real one.
func (r *Resolver) BlobOfSize(ref string, dgst digest.Digest, size int64) (*Blob, error) {
	if size <= 0 {
		return nil, fmt.Errorf("blob %s: size %d: %w", dgst, size, errdefs.ErrInvalidArgument)
	}
	b, err := r.newBlob(ref, dgst)
	if err != nil {
		return nil, err
	}
	b.size = size
	return b, nil
}
