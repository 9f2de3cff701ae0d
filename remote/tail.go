package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// MaxTailBytes bounds the n of BlobTail: the tail is held in memory.
const MaxTailBytes = 16 << 20

// BlobTail is Blob plus the blob's last n bytes (all of it when it is
// shorter), fetched with one request where the host answers a suffix range
// ("Range: bytes=-n"): the answer's Content-Range carries the blob's size, so
// the size lookup of Blob costs nothing more. An eStargz blob ends with its
// footer and, before it, its TOC: resolving a layer then takes one round
// trip instead of three (size, footer, TOC).
//
// A host that ignores or refuses suffix ranges is asked the old way (size,
// then a bounded range for the tail): two requests, the same answer.
func (r *Resolver) BlobTail(ctx context.Context, ref string, dgst digest.Digest, n int) (*Blob, []byte, error) {
	if n <= 0 || n > MaxTailBytes {
		return nil, nil, fmt.Errorf("tail of %d bytes, want 1 to %d: %w", n, MaxTailBytes, errdefs.ErrInvalidArgument)
	}
	b, err := r.newBlob(ref, dgst)
	if err != nil {
		return nil, nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"image_ref": ref, "layer_digest": dgst}))
	tail, err := b.fetchTail(ctx, n)
	if err == nil {
		return b, tail, nil
	}
	if !errdefs.IsNotImplemented(err) {
		return nil, nil, err
	}
	log.G(ctx).WithError(err).Debug("suffix range refused, asking for the size first")
	if b.size, err = b.fetchSize(ctx); err != nil {
		return nil, nil, err
	}
	tail = make([]byte, min(int64(n), b.size))
	if _, err := b.ReadAt(ctx, tail, b.size-int64(len(tail))); err != nil && err != io.EOF {
		return nil, nil, err
	}
	return b, tail, nil
}

// fetchTail asks the hosts in order for the last n bytes with a suffix
// range, with the retries and hedging of ReadAt under one deadline, and
// sets b.size from the answer.
func (b *Blob) fetchTail(ctx context.Context, n int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.ReadTimeout)
	defer cancel()
	r := b.resolver
	// Each attempt fills its own buffer: the blob's size in the first 8
	// bytes, then up to n bytes of tail; the winner's is copied to out.
	out := make([]byte, 8+n)
	op := fmt.Sprintf("GET suffix range bytes=-%d", n)
	err := b.withRetries(ctx, op, func(ctx context.Context, h docker.RegistryHost) error {
		lat := r.latencyOf(h.Host)
		return hedged(ctx, h.Host, out, lat.hedgeDelays(&r.opts), r.opts.MaxHedges, lat, func(ctx context.Context, buf []byte, progress func()) error {
			size, err := b.suffixRange(ctx, h, buf[8:], progress)
			if err == nil {
				binary.LittleEndian.PutUint64(buf, uint64(size))
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	b.size = int64(binary.LittleEndian.Uint64(out))
	return out[8 : 8+min(int64(n), b.size)], nil
}

// suffixRange fetches the last len(p) bytes (the whole blob when it is
// shorter) from host h into the start of p and returns the blob's size,
// calling progress (if not nil) once the host has answered, before the
// body, and as the body's bytes arrive. Its error is an *attemptError; a host that answers with the whole
// blob or refuses the range (416) gets ErrNotImplemented, which is not
// retried.
func (b *Blob) suffixRange(ctx context.Context, h docker.RegistryHost, p []byte, progress func()) (size int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.resolver.opts.RequestTimeout)
	defer cancel()
	rng := fmt.Sprintf("bytes=-%d", len(p))
	log.G(ctx).WithFields(log.Fields{"host": h.Host, "range": rng}).Debug("fetching blob tail")

	release, err := b.resolver.acquire(ctx, h.Host)
	if err != nil {
		return 0, &attemptError{cause: reasonTimeout, status: "no request slot in time", err: err}
	}
	defer release()
	start := time.Now()
	reason, status := reasonNone, ""
	var wait time.Duration // the server's Retry-After
	var got int64
	defer func() {
		observeRequest(http.MethodGet, start, reason)
		observeHost(h.Host, start, reason, got)
		if err != nil {
			if status == "" {
				status = err.Error()
			}
			err = &attemptError{cause: reason, status: status, retryAfter: wait, err: err}
		}
	}()

	resp, err := b.do(ctx, h, http.MethodGet, http.Header{"Range": {rng}, "Accept-Encoding": {"identity"}})
	if err != nil {
		reason, status = reasonOf(err), transportStatus(err)
		return 0, err
	}
	defer closeBody(resp)
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK, http.StatusRequestedRangeNotSatisfiable:
		reason, status = reasonRange, resp.Status
		return 0, fmt.Errorf("GET %s range %s: %s: %w", b.where(h), rng, resp.Status, errdefs.ErrNotImplemented)
	default:
		reason, status = statusReason(resp.StatusCode), resp.Status
		wait = retryAfter(resp.Header, time.Now())
		return 0, b.statusError(http.MethodGet, h, resp)
	}
	first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err == nil && total < 0 {
		err = fmt.Errorf("content-range %q: unknown complete length", resp.Header.Get("Content-Range"))
	}
	if err != nil {
		reason, status = reasonRange, "bad Content-Range"
		return 0, fmt.Errorf("GET %s range %s: %w: %w", b.where(h), rng, err, errdefs.ErrUnavailable)
	}
	// The answer must be exactly the blob's last min(n, size) bytes: a
	// range that ends early or starts elsewhere is not the tail, and
	// the footer read from it would be garbage.
	want := min(int64(len(p)), total)
	if last != total-1 || first != total-want {
		reason, status = reasonRange, "wrong Content-Range"
		return 0, fmt.Errorf("GET %s range %s: answered with %q: %w", b.where(h), rng, resp.Header.Get("Content-Range"), errdefs.ErrUnavailable)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != want {
		reason, status = reasonRange, "body length differs from range"
		return 0, fmt.Errorf("GET %s range %s: Content-Length %d for %d bytes: %w", b.where(h), rng, resp.ContentLength, want, errdefs.ErrUnavailable)
	}
	if progress != nil {
		progress()
	}
	if n, err := io.ReadFull(withProgress(resp.Body, progress), p[:want]); err != nil {
		reason, status = reasonShortRead, "truncated body"
		return 0, fmt.Errorf("GET %s range %s: read %d of %d bytes: %w: %w", b.where(h), rng, n, want, err, errdefs.ErrUnavailable)
	}
	if resp.ContentLength < 0 {
		var one [1]byte
		if n, _ := resp.Body.Read(one[:]); n > 0 {
			reason, status = reasonRange, "body longer than range"
			return 0, fmt.Errorf("GET %s range %s: body longer than %d bytes: %w", b.where(h), rng, want, errdefs.ErrUnavailable)
		}
	}
	got = want
	return total, nil
}
