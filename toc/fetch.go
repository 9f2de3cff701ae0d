package toc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/metrics"
)

// Fetch reads the TOC of the eStargz blob src with two reads (the footer,
// then the TOC; with WithTail, what the tail holds costs no request and a
// TOC that starts before it one request for the bytes before it), bounds it
// by lim, verifies the raw JSON against
// tocDigest (the layer's containerd.io/snapshot/stargz/toc.digest
// annotation), decodes it and validates it.
//
// A layer that must not be loaded lazily yields a *RefusedError; a failed
// read yields the source's error, wrapped. The returned Layer is ready for
// Store.Put.
func Fetch(ctx context.Context, src Source, blobDigest, tocDigest digest.Digest, lim Limits) (*Layer, error) {
	var c collector
	l, err := FetchTo(ctx, src, blobDigest, tocDigest, lim, &c)
	if err != nil {
		return nil, err
	}
	l.TOC = c.jtoc()
	return l, nil
}

// FetchTo is Fetch for a caller that builds its own structure from the
// entries: each is handed to sink as it is decoded and validated, and none
// is kept (the returned Layer's TOC is nil), so that loading a layer never
// holds its whole decoded TOC. The Layer is returned, and what sink built
// is valid, only if every check passed.
func FetchTo(ctx context.Context, src Source, blobDigest, tocDigest digest.Digest, lim Limits, sink Sink) (_ *Layer, retErr error) {
	if err := lim.check(); err != nil {
		return nil, err
	}
	defer func() {
		var re *RefusedError
		if retErr != nil && !errors.As(retErr, &re) {
			retErr = fmt.Errorf("failed to fetch TOC of layer %s: %w", blobDigest, retErr)
		}
		retErr = withLayer(retErr, blobDigest)
	}()
	if err := blobDigest.Validate(); err != nil {
		return nil, refuse(ReasonMalformed, "", fmt.Errorf("invalid blob digest %q: %w", blobDigest, err))
	}
	if err := tocDigest.Validate(); err != nil {
		return nil, refuse(ReasonMalformed, "", fmt.Errorf("invalid TOC digest annotation %q: %w", tocDigest, err))
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField(logLayerDigest, blobDigest))

	fetchStart := time.Now()
	blobSize := src.Size()
	tocOffset, footerSize, err := readFooter(ctx, src, blobSize)
	if err != nil {
		return nil, err
	}
	compressed, err := readCompressedTOC(ctx, src, blobSize, tocOffset, footerSize, lim.MaxCompressedSize)
	if err != nil {
		return nil, err
	}
	fetchDuration, compressedSize := time.Since(fetchStart), len(compressed)
	metrics.TOCFetchDuration.Observe(fetchDuration.Seconds())

	// Refused TOCs are timed too: parsing hostile input costs the same.
	parseStart := time.Now()
	defer func() { metrics.TOCParseDuration.Observe(time.Since(parseStart).Seconds()) }()
	// Decoded as it is inflated: the JSON is never held whole.
	raw, declared, err := openTOC(compressed, lim.MaxSize)
	if err != nil {
		return nil, err
	}
	tocSize, entries, err := decodeInto(ctx, raw, declared, tocDigest, blobSize, tocOffset, lim, sink)
	if err != nil {
		return nil, err
	}
	parseDuration := time.Since(parseStart)

	log.G(ctx).WithFields(log.Fields{
		"toc_digest":      tocDigest,
		"entries":         entries,
		"toc_size":        tocSize,
		"compressed_size": compressedSize,
		"fetch_duration":  fetchDuration,
		"parse_duration":  parseDuration,
	}).Debug("table of contents fetched")
	return &Layer{
		BlobDigest:    blobDigest,
		BlobSize:      blobSize,
		TOCDigest:     tocDigest,
		TOCOffset:     tocOffset,
		TOCCompressed: compressed,
		verified:      compressed,
	}, nil
}

// readFooter reads the last estargz.FooterSize bytes with one request and
// lets estargz parse them: it tries the 51-byte eStargz footer, then the
// legacy 47-byte stargz footer at the tail of the same bytes.
func readFooter(ctx context.Context, src Source, blobSize int64) (tocOffset, footerSize int64, _ error) {
	if blobSize < estargz.FooterSize {
		return 0, 0, refuse(ReasonUnsupportedFormat, "", fmt.Errorf("blob of %d bytes is smaller than an eStargz footer", blobSize))
	}
	footer := make([]byte, estargz.FooterSize)
	if err := readFull(ctx, src, footer, blobSize-estargz.FooterSize); err != nil {
		return 0, 0, fmt.Errorf("failed to read footer: %w", err)
	}
	tocOffset, footerSize, err := estargz.OpenFooter(io.NewSectionReader(bytes.NewReader(footer), 0, int64(len(footer))))
	if err != nil {
		// zstd:chunked, plain gzip and anything else end up here.
		return 0, 0, refuse(ReasonUnsupportedFormat, "", fmt.Errorf("no gzip eStargz footer: %w", err))
	}
	return tocOffset, footerSize, nil
}

// readCompressedTOC checks the compressed TOC's place and size before it
// allocates or fetches anything, then fetches it with one request.
func readCompressedTOC(ctx context.Context, src Source, blobSize, tocOffset, footerSize, maxSize int64) ([]byte, error) {
	size, err := compressedTOCSize(blobSize, tocOffset, footerSize, maxSize)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if err := readFull(ctx, src, buf, tocOffset); err != nil {
		return nil, fmt.Errorf("failed to read %d-byte TOC at offset %d: %w", size, tocOffset, err)
	}
	return buf, nil
}

// compressedTOCSize checks the TOC's place in the blob and the compressed
// TOC's size against maxSize, and returns that size.
func compressedTOCSize(blobSize, tocOffset, footerSize, maxSize int64) (int64, error) {
	end := blobSize - footerSize
	if tocOffset < 0 || tocOffset >= end {
		return 0, refuse(ReasonBadOffset, "", fmt.Errorf("footer puts the TOC at offset %d, outside the %d-byte blob body", tocOffset, end))
	}
	size := end - tocOffset
	if size > maxSize {
		return 0, refuse(ReasonTOCTooLarge, "", fmt.Errorf("compressed TOC is %d bytes, limit is %d", size, maxSize))
	}
	return size, nil
}

// readFull makes exactly one ReadAt call: the source does one bounded range
// request per call, and a short answer is an error of the source.
func readFull(ctx context.Context, src Source, p []byte, off int64) error {
	n, err := src.ReadAt(ctx, p, off)
	if n == len(p) {
		return nil // io.ReaderAt may report io.EOF with a full read at the end
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}
