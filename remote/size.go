package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// fetchSize asks the hosts in order for the blob's size, with the
// retries of ReadAt under one deadline.
func (b *Blob) fetchSize(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.ReadTimeout)
	defer cancel()
	var size int64
	r := b.resolver
	err := b.withRetries(ctx, "size lookup", func(ctx context.Context, h docker.RegistryHost) error {
		// Hedged like a read: each attempt leaves the size in its own
		// 8-byte buffer, the winner's is copied to out.
		var out [8]byte
		lat := r.latencyOf(h.Host)
		// The answer is the whole of a HEAD: its delay is the answer's.
		err := hedged(ctx, h.Host, out[:], lat.hedgeDelays(&r.opts), r.opts.MaxHedges, lat, func(ctx context.Context, buf []byte, _ func()) error {
			s, err := b.sizeFrom(ctx, h)
			if err == nil {
				binary.LittleEndian.PutUint64(buf, uint64(s))
			}
			return err
		})
		if err == nil {
			size = int64(binary.LittleEndian.Uint64(out[:]))
		}
		return err
	})
	return size, err
}

// sizeFrom asks host h for the blob's size: HEAD first, then a one-byte
// ranged GET for hosts that refuse HEAD (some answer 405; a HEAD redirected
// to a URL signed for GET gets 403) or omit Content-Length.
func (b *Blob) sizeFrom(ctx context.Context, h docker.RegistryHost) (int64, error) {
	size, err := b.headSize(ctx, h)
	if err == nil || errdefs.IsNotFound(err) || errdefs.IsUnavailable(err) || ctx.Err() != nil {
		return size, err
	}
	log.G(ctx).WithError(err).WithField("host", h.Host).Debug("blob HEAD refused, asking for one byte")
	return b.rangeSize(ctx, h)
}

func (b *Blob) headSize(ctx context.Context, h docker.RegistryHost) (_ int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.RequestTimeout)
	defer cancel()
	start := time.Now()
	reason := reasonNone
	defer func() { observeRequest(http.MethodHead, start, reason) }()

	resp, err := b.do(ctx, h, http.MethodHead, http.Header{"Accept-Encoding": {"identity"}})
	if err != nil {
		reason = reasonOf(err)
		return 0, err
	}
	closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		reason = statusReason(resp.StatusCode)
		return 0, b.statusError(http.MethodHead, h, resp)
	}
	if resp.ContentLength < 0 {
		reason = reasonRange
		return 0, fmt.Errorf("HEAD %s: no Content-Length: %w", b.where(h), errdefs.ErrNotImplemented)
	}
	return resp.ContentLength, nil
}

func (b *Blob) rangeSize(ctx context.Context, h docker.RegistryHost) (_ int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.RequestTimeout)
	defer cancel()
	start := time.Now()
	reason := reasonNone
	defer func() { observeRequest(http.MethodGet, start, reason) }()

	resp, err := b.do(ctx, h, http.MethodGet, http.Header{"Range": {"bytes=0-0"}, "Accept-Encoding": {"identity"}})
	if err != nil {
		reason = reasonOf(err)
		return 0, err
	}
	defer closeBody(resp)
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		// Without range requests nothing can be read lazily: say so now
		// rather than on the first read.
		reason = reasonRange
		return 0, fmt.Errorf("GET %s: host ignored the Range header: %w", b.where(h), errdefs.ErrNotImplemented)
	default:
		reason = statusReason(resp.StatusCode)
		return 0, b.statusError(http.MethodGet, h, resp)
	}
	_, _, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err == nil && total < 0 {
		err = fmt.Errorf("content-range %q: unknown complete length", resp.Header.Get("Content-Range"))
	}
	if err != nil {
		reason = reasonRange
		return 0, fmt.Errorf("GET %s range bytes=0-0: %w: %w", b.where(h), err, errdefs.ErrUnavailable)
	}
	return total, nil
}
