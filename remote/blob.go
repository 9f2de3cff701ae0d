package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// Blob is one layer blob in one repository, readable at any offset. It is
// safe for concurrent use.
type Blob struct {
	resolver *Resolver
	spec     reference.Spec
	registry string // host name as in the ref
	repo     string // repository path below the registry
	dgst     digest.Digest
	size     int64
}

// Size returns the blob's size in bytes as the registry reported it.
func (b *Blob) Size() int64 { return b.size }

// Digest returns the blob's digest.
func (b *Blob) Digest() digest.Digest { return b.dgst }

// ReadAt fills p with the blob's bytes at off using one range request
// ("Range: bytes=off-end") per host, trying the hosts in order (mirrors
// first) until one answers 206 with the matching Content-Range and the
// whole body. Like io.ReaderAt it returns io.EOF with fewer bytes when p
// reaches past the end of the blob. On error no byte count is reported and
// p may hold partial data.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob %s: negative offset %d: %w", b.dgst, off, errdefs.ErrInvalidArgument)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want, eof := len(p), false
	if rem := b.size - off; int64(want) > rem {
		want, eof = int(rem), true
	}
	if want == 0 {
		return 0, nil
	}
	hosts, err := b.resolver.registryHosts(ctx, b.registry)
	if err != nil {
		return 0, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("layer_digest", b.dgst))
	for i, h := range hosts {
		err = b.readRange(ctx, h, p[:want], off)
		if err == nil {
			if eof {
				return want, io.EOF
			}
			return want, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %w", err, ctx.Err())
		}
		if i < len(hosts)-1 {
			log.G(ctx).WithError(err).WithField("host", h.Host).Warn("blob range request failed, trying next host")
		}
	}
	return 0, err
}

// readRange fetches exactly len(p) bytes at off from host h.
func (b *Blob) readRange(ctx context.Context, h docker.RegistryHost, p []byte, off int64) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.RequestTimeout)
	defer cancel()
	last := off + int64(len(p)) - 1
	rng := fmt.Sprintf("bytes=%d-%d", off, last)
	log.G(ctx).WithFields(log.Fields{"host": h.Host, "range": rng}).Debug("fetching blob range")

	start := time.Now()
	reason := reasonNone
	defer func() { observeRequest(http.MethodGet, start, reason) }()

	resp, err := b.do(ctx, h, http.MethodGet, http.Header{
		"Range": {rng},
		// A compressed answer would not be the blob's bytes at off;
		// setting it also stops net/http from asking for gzip.
		"Accept-Encoding": {"identity"},
	})
	if err != nil {
		reason = reasonOf(err)
		return err
	}
	defer closeBody(resp)

	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		reason = reasonRange
		return fmt.Errorf("GET %s range %s: host ignored the Range header: %w", b.where(h), rng, errdefs.ErrNotImplemented)
	default:
		reason = statusReason(resp.StatusCode)
		return b.statusError(http.MethodGet, h, resp)
	}
	first, end, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		reason = reasonRange
		return fmt.Errorf("GET %s range %s: %w: %w", b.where(h), rng, err, errdefs.ErrUnavailable)
	}
	if first != off || end != last || (total >= 0 && total != b.size) {
		reason = reasonRange
		return fmt.Errorf("GET %s range %s: answered with %q for a blob of %d bytes: %w",
			b.where(h), rng, resp.Header.Get("Content-Range"), b.size, errdefs.ErrUnavailable)
	}
	if n, err := io.ReadFull(resp.Body, p); err != nil {
		reason = reasonShortRead
		return fmt.Errorf("GET %s range %s: read %d of %d bytes: %w: %w", b.where(h), rng, n, len(p), err, errdefs.ErrUnavailable)
	}
	return nil
}
