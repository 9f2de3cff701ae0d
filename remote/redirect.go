package remote

import (
	"context"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/log"
)

// DefaultRedirectTTL is how long the final URL of a redirected blob GET
// (a storage service's signed URL, typically valid for 10–20 minutes) is
// used directly before the registry is asked again.
const DefaultRedirectTTL = 5 * time.Minute

// redirect is where a host last redirected the blob's GETs.
type redirect struct {
	host    string // the registry host that redirected
	url     string
	expires time.Time
}

// viaRedirect sends a GET straight to the URL host h last redirected the
// blob to, sparing the registry (and its token check) a round trip per
// read. The URL is forgotten when it expires or fails: the caller then
// asks the registry, which redirects afresh. The storage URL is signed on
// its own, so neither the registry's headers nor its token go there.
func (b *Blob) viaRedirect(ctx context.Context, h docker.RegistryHost, hdr http.Header) (*http.Response, bool) {
	rd := b.redirect.Load()
	if rd == nil || rd.host != h.Host {
		return nil, false
	}
	if time.Now().After(rd.expires) {
		b.redirect.CompareAndSwap(rd, nil)
		return nil, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rd.url, nil)
	if err != nil {
		b.redirect.CompareAndSwap(rd, nil)
		return nil, false
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", b.resolver.opts.UserAgent)
	resp, err := h.Client.Do(req)
	if err == nil && resp.StatusCode/100 == 2 {
		return resp, true
	}
	if err == nil {
		closeBody(resp)
	}
	if ctx.Err() == nil {
		// Expired or broken: back to the registry, once per URL.
		b.redirect.CompareAndSwap(rd, nil)
		log.G(ctx).WithError(err).WithField("host", h.Host).Debug("cached blob redirect failed, asking the registry again")
	}
	return nil, false
}

func (b *Blob) rememberRedirect(h docker.RegistryHost, url string) {
	b.redirect.Store(&redirect{host: h.Host, url: url, expires: time.Now().Add(b.resolver.opts.RedirectTTL)})
}
