package ctl

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/lazyfs/lazyfs/remote"
)

// connectTimeout bounds connecting to containerd and its first answer: a
// missing or wedged containerd is reported instead of waited on.
const connectTimeout = 10 * time.Second

// connect returns a client of containerd at --address, in --namespace, and
// ctx carrying the namespace. It checks that containerd answers, so that a
// wrong address fails here with a message that names it rather than in the
// middle of a pull.
func (a *app) connect(ctx context.Context) (context.Context, *client.Client, error) {
	// gRPC retries a socket that is missing or refuses until its timeout;
	// one plain dial tells at once.
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := d.DialContext(dctx, "unix", strings.TrimPrefix(a.g.address, "unix://"))
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("containerd at %s does not answer (is it running? --address selects its socket): %w", a.g.address, err)
	}
	conn.Close()

	c, err := client.New(a.g.address,
		client.WithDefaultNamespace(a.g.namespace),
		client.WithTimeout(connectTimeout))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to connect to containerd at %s: %w", a.g.address, err)
	}
	ctx = namespaces.WithNamespace(ctx, a.g.namespace)
	vctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := c.Version(vctx); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("containerd at %s does not answer (is it running? --address selects its socket): %w", a.g.address, err)
	}
	return ctx, c, nil
}

// resolverOptions say how registries are reached.
type resolverOptions struct {
	// plainHTTP talks http to every registry without a hosts.toml that
	// says otherwise; localhost and 127.0.0.1 always get http.
	plainHTTP bool
	// hostsDir holds hosts.toml files in containerd's layout
	// (<host>/hosts.toml); "" or a missing dir means the defaults.
	hostsDir string
}

// newResolver returns containerd's docker resolver over the hosts that
// hosts.toml configures, with credentials from the docker config.json and
// retries of its GET and HEAD requests.
func newResolver(ctx context.Context, opts resolverOptions) remotes.Resolver {
	return docker.NewResolver(docker.ResolverOptions{Hosts: registryHosts(ctx, opts)})
}

func registryHosts(ctx context.Context, opts resolverOptions) docker.RegistryHosts {
	// Retry: a reset or a 5xx on the manifest request must not fail a
	// whole pull; remote's RetryTransport retries GET and HEAD only.
	// Credentials from the docker config.json ($DOCKER_CONFIG, then
	// ~/.docker), as the workers read them.
	creds := remote.NewDockerCredentials(remote.DockerConfigPath(""))
	return remote.ConfigureHosts(ctx, remote.HostsOptions{
		HostsDir: opts.hostsDir, PlainHTTP: opts.plainHTTP, Retry: true, Credentials: creds.Credentials,
	})
}
