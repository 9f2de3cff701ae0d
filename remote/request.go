package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
)

// blobURL is the blob's address on host h. A mirror learns the registry it
// stands in for from the "ns" query parameter, as containerd sends it.
func (b *Blob) blobURL(h docker.RegistryHost) string {
	u := url.URL{
		Scheme: h.Scheme,
		Host:   h.Host,
		Path:   path.Join("/", h.Path, b.repo, "blobs", b.dgst.String()),
	}
	if isMirror(h, b.registry) {
		u.RawQuery = url.Values{"ns": {b.registry}}.Encode()
	}
	return u.String()
}

func isMirror(h docker.RegistryHost, registry string) bool {
	if registry == "docker.io" && h.Host == "registry-1.docker.io" {
		return false
	}
	return h.Host != registry
}

// do sends one request for the blob to host h with the headers hdr and
// returns the response whatever its status. A 401 is answered once: the
// challenge goes to the host's authorizer (which fetches a token or
// prepares basic auth) and the request is sent again. The caller closes
// the body.
func (b *Blob) do(ctx context.Context, h docker.RegistryHost, method string, hdr http.Header) (*http.Response, error) {
	// The authorizer asks the token server for the scopes found in ctx.
	ctx, err := docker.ContextWithRepositoryScope(ctx, b.spec, false)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", method, b.where(h), err, errdefs.ErrInvalidArgument)
	}
	u := b.blobURL(h)
	if method == http.MethodGet {
		if resp, ok := b.viaRedirect(ctx, h, hdr); ok {
			return resp, nil
		}
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w: %w", method, b.where(h), err, errdefs.ErrInvalidArgument)
		}
		for k, v := range h.Header {
			req.Header[k] = append([]string(nil), v...)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if req.Header.Get("User-Agent") == "" {
			req.Header.Set("User-Agent", b.resolver.opts.UserAgent)
		}
		if h.Authorizer != nil {
			if err := h.Authorizer.Authorize(ctx, req); err != nil {
				return nil, &authError{fmt.Errorf("%s %s: failed to authorize: %w", method, b.where(h), classifyAuthError(err))}
			}
		}
		resp, err := h.Client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, b.where(h), classifyTransportError(err))
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 || h.Authorizer == nil {
			if method == http.MethodGet && resp.StatusCode/100 == 2 && resp.Request != nil && resp.Request.URL.String() != u {
				b.rememberRedirect(h, resp.Request.URL.String())
			}
			return resp, nil
		}
		err = h.Authorizer.AddResponses(ctx, []*http.Response{resp})
		closeBody(resp)
		if err != nil {
			if errdefs.IsNotImplemented(err) {
				// No scheme we can answer: report the 401 itself.
				return nil, &authError{fmt.Errorf("%s %s: %s: %w", method, b.where(h), resp.Status, errdefs.ErrUnauthenticated)}
			}
			return nil, &authError{fmt.Errorf("%s %s: %s: failed to handle challenge: %w", method, b.where(h), resp.Status, classifyAuthError(err))}
		}
	}
}

// where names the blob on host h for errors.
func (b *Blob) where(h docker.RegistryHost) string {
	return fmt.Sprintf("blob %s of %s on host %s", b.dgst, b.repo, h.Host)
}

// statusError turns a response with an unexpected status into an error of
// the matching errdefs class, naming the host, the blob and the status.
func (b *Blob) statusError(method string, h docker.RegistryHost, resp *http.Response) error {
	return fmt.Errorf("%s %s: unexpected status %s: %w", method, b.where(h), resp.Status, classifyStatus(resp.StatusCode))
}

// closeBody drains a little of what is left of a response body before
// closing it: a drained connection goes back to the pool for the next
// request instead of being torn down (an error page or a challenge is
// small; a body we gave up on is not, and its connection is dropped).
func closeBody(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}
