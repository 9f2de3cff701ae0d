package toc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"hash"
	"io"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// openTOC opens the JSON inside a compressed TOC (a gzip stream holding a
// tar with the one entry stargz.index.json) and refuses, before reading a
// byte of it, JSON whose tar header declares more than maxSize bytes: a
// layer of 2 MB whose TOC inflates to 2 GiB says so in that header, and
// inflating it up to the limit first would cost the worker the limit.
// estargz's GzipDecompressor.DecompressTOC does the same without showing
// the header. The reader ends where the header says the JSON does.
func openTOC(compressed []byte, maxSize int64) (io.Reader, int64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, 0, refuse(ReasonMalformed, "", fmt.Errorf("failed to open TOC stream: %w", err))
	}
	// The TOC is one gzip member; what may follow is the footer.
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return nil, 0, refuse(ReasonMalformed, "", fmt.Errorf("failed to read the TOC's tar header: %w", err))
	}
	if h.Name != estargz.TOCTarName {
		return nil, 0, refuse(ReasonMalformed, "", fmt.Errorf("TOC stream holds %q, not %s", h.Name, estargz.TOCTarName))
	}
	if h.Size > maxSize {
		return nil, 0, refuse(ReasonTOCTooLarge, "", fmt.Errorf("TOC tar header declares %d bytes of JSON, limit is %d", h.Size, maxSize))
	}
	return tr, h.Size, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decodeVerified decodes TOC JSON from r as it arrives, hashing the same
// bytes, and returns the TOC only if they have digest tocDigest: the JSON
// is never held whole, only the decoded TOC. It reads at most maxSize
// bytes (more is refused as too large). A digest mismatch is reported
// before a decoding error: bytes that are not the TOC the image names are
// refused as such, whatever they hold.
func decodeVerified(ctx context.Context, r io.Reader, tocDigest digest.Digest, maxSize int64, maxEntries int) (*estargz.JTOC, int64, error) {
	h := tocDigest.Algorithm().Hash()
	in := &countingReader{r: io.LimitReader(r, maxSize+1)}
	jtoc, decErr := decodeTOC(ctx, io.TeeReader(in, h), maxEntries)
	if ctx.Err() != nil && decErr != nil {
		return nil, in.n, decErr
	}
	// The decoder stops at the end of the TOC object (or at an error):
	// what is left counts for the digest and the size.
	if _, err := io.Copy(h, in); err != nil {
		return nil, in.n, refuse(ReasonMalformed, "", fmt.Errorf("failed to decompress TOC: %w", err))
	}
	if in.n > maxSize {
		return nil, in.n, refuse(ReasonTOCTooLarge, "", fmt.Errorf("TOC JSON exceeds the limit of %d bytes", maxSize))
	}
	if got := digestOf(tocDigest, h); got != tocDigest {
		return nil, in.n, refuse(ReasonTOCDigestMismatch, "", fmt.Errorf("TOC JSON has digest %s, annotation says %s", got, tocDigest))
	}
	if decErr != nil {
		return nil, in.n, decErr
	}
	return jtoc, in.n, nil
}

func digestOf(like digest.Digest, h hash.Hash) digest.Digest {
	return digest.NewDigest(like.Algorithm(), h)
}
