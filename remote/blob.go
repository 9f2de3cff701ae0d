package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/lazyfs/lazyfs/metrics"
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

	// outage is set while reads of this blob fail for good, so that one
	// outage is logged once, not once per read.
	outage atomic.Bool
	// redirect is the final URL of the last redirected GET, if any.
	redirect atomic.Pointer[redirect]
}

// Size returns the blob's size in bytes as the registry reported it.
func (b *Blob) Size() int64 { return b.size }

// Digest returns the blob's digest.
func (b *Blob) Digest() digest.Digest { return b.dgst }

// ReadAt fills p with the blob's bytes at off with one bounded range
// request ("Range: bytes=off-end") at a time, trying the hosts in order
// (mirrors first). Transient failures (resets, 5xx, 429, stalls, bodies
// that are not exactly the range asked for) are retried with backoff, a
// request slower than the host's recent latency is hedged, all under one
// deadline: ctx's, or Options.ReadTimeout when ctx has none or a later
// one. Like io.ReaderAt it returns io.EOF with fewer bytes when p reaches
// past the end of the blob. On error no byte count is reported and p may
// hold partial data.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return b.ReadAtVerified(ctx, p, off, nil)
}

// ReadAtVerified is ReadAt with a check of the bytes: verify (if not nil)
// is called with each answer's bytes before they are accepted, and an
// answer it refuses is retried like a truncated one, under the same
// deadline. It is how a caller that can tell good bytes from bad (chunk
// digests) leaves the retrying of corrupt answers to this package too.
func (b *Blob) ReadAtVerified(ctx context.Context, p []byte, off int64, verify func([]byte) error) (int, error) {
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
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.ReadTimeout)
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("layer_digest", b.dgst))
	op := fmt.Sprintf("GET range bytes=%d-%d", off, off+int64(want)-1)
	err := b.withRetries(ctx, op, func(ctx context.Context, h docker.RegistryHost) error {
		lat := b.resolver.latencyOf(h.Host)
		return hedged(ctx, h.Host, p[:want], lat.hedgeDelays(&b.resolver.opts), b.resolver.opts.MaxHedges, lat,
			func(ctx context.Context, buf []byte, progress func()) error {
				if err := b.readRange(ctx, h, buf, off, progress); err != nil {
					return err
				}
				if verify == nil {
					return nil
				}
				if err := verify(buf); err != nil {
					metrics.RegistryRequests.WithLabelValues(h.Host, reasonCorrupt).Inc()
					return &attemptError{cause: reasonCorrupt, status: "corrupt bytes",
						err: fmt.Errorf("GET %s %s: %w: %w", b.where(h), op, err, errdefs.ErrUnavailable)}
				}
				return nil
			})
	})
	if err != nil {
		return 0, err
	}
	if eof {
		return want, io.EOF
	}
	return want, nil
}

// readRange fetches exactly len(p) bytes at off from host h, calling
// progress (if not nil) once the host has answered, before the body, and
// as the body's bytes arrive. Its error is an *attemptError.
func (b *Blob) readRange(ctx context.Context, h docker.RegistryHost, p []byte, off int64, progress func()) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.RequestTimeout)
	defer cancel()
	last := off + int64(len(p)) - 1
	rng := fmt.Sprintf("bytes=%d-%d", off, last)
	log.G(ctx).WithFields(log.Fields{"host": h.Host, "range": rng}).Debug("fetching blob range")

	release, err := b.resolver.acquire(ctx, h.Host)
	if err != nil {
		return &attemptError{cause: reasonTimeout, status: "no request slot in time", err: err}
	}
	defer release()
	start := time.Now()
	reason, status := reasonNone, ""
	var wait time.Duration // the server's Retry-After
	defer func() {
		observeRequest(http.MethodGet, start, reason)
		observeHost(h.Host, start, reason, int64(len(p)))
		if err != nil {
			if status == "" {
				status = err.Error()
			}
			err = &attemptError{cause: reason, status: status, retryAfter: wait, err: err}
		}
	}()

	resp, err := b.do(ctx, h, http.MethodGet, http.Header{
		"Range": {rng},
		// A compressed answer would not be the blob's bytes at off;
		// setting it also stops net/http from asking for gzip.
		"Accept-Encoding": {"identity"},
	})
	if err != nil {
		reason, status = reasonOf(err), transportStatus(err)
		return err
	}
	defer closeBody(resp)
	if progress != nil {
		progress()
	}

	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		reason, status = reasonRange, resp.Status
		return fmt.Errorf("GET %s range %s: host ignored the Range header: %w", b.where(h), rng, errdefs.ErrNotImplemented)
	default:
		reason, status = statusReason(resp.StatusCode), resp.Status
		wait = retryAfter(resp.Header, time.Now())
		return b.statusError(http.MethodGet, h, resp)
	}
	first, end, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		reason, status = reasonRange, "bad Content-Range"
		return fmt.Errorf("GET %s range %s: %w: %w", b.where(h), rng, err, errdefs.ErrUnavailable)
	}
	if first != off || end != last || (total >= 0 && total != b.size) {
		reason, status = reasonRange, "wrong Content-Range"
		return fmt.Errorf("GET %s range %s: answered with %q for a blob of %d bytes: %w",
			b.where(h), rng, resp.Header.Get("Content-Range"), b.size, errdefs.ErrUnavailable)
	}
	// A body longer than the range is not the range, even if it starts
	// with the right bytes: something between us and the registry is
	// broken, and the next answer may be too.
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(p)) {
		reason, status = reasonRange, "body length differs from range"
		return fmt.Errorf("GET %s range %s: Content-Length %d for %d bytes: %w", b.where(h), rng, resp.ContentLength, len(p), errdefs.ErrUnavailable)
	}
	if n, err := io.ReadFull(withProgress(resp.Body, progress), p); err != nil {
		reason, status = reasonShortRead, "truncated body"
		return fmt.Errorf("GET %s range %s: read %d of %d bytes: %w: %w", b.where(h), rng, n, len(p), err, errdefs.ErrUnavailable)
	}
	if resp.ContentLength < 0 {
		var one [1]byte
		if n, _ := resp.Body.Read(one[:]); n > 0 {
			reason, status = reasonRange, "body longer than range"
			return fmt.Errorf("GET %s range %s: body longer than %d bytes: %w", b.where(h), rng, len(p), errdefs.ErrUnavailable)
		}
	}
	return nil
}

// progressReader calls progress after each read that brought bytes: how a
// hedged request tells a body that is coming from one that stopped.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (pr progressReader) Read(p []byte) (int, error) {
	n, err := pr.r.Read(p)
	if n > 0 {
		pr.progress()
	}
	return n, err
}

// withProgress is r reporting its reads to progress, or r itself when
// progress is nil.
func withProgress(r io.Reader, progress func()) io.Reader {
	if progress == nil {
		return r
	}
	return progressReader{r, progress}
}
