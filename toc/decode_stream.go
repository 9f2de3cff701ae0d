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
// bytes, and hands it to visit: the JSON is never held whole. It returns
// nil only if the bytes have digest tocDigest. It reads at most maxSize
// bytes (more is refused as too large). A digest mismatch is reported
// before a decoding error or an error of visit: bytes that are not the TOC
// the image names are refused as such, whatever they hold.
func decodeVerified(ctx context.Context, r io.Reader, tocDigest digest.Digest, maxSize int64, maxEntries int, visit visitor) (int64, error) {
	h := tocDigest.Algorithm().Hash()
	in := &countingReader{r: io.LimitReader(r, maxSize+1)}
	decErr := decodeTOC(ctx, io.TeeReader(in, h), maxEntries, visit)
	if ctx.Err() != nil && decErr != nil {
		return in.n, decErr
	}
	// The decoder stops at the end of the TOC object (or at an error):
	// what is left counts for the digest and the size.
	if _, err := io.Copy(h, in); err != nil {
		return in.n, refuse(ReasonMalformed, "", fmt.Errorf("failed to decompress TOC: %w", err))
	}
	if in.n > maxSize {
		return in.n, refuse(ReasonTOCTooLarge, "", fmt.Errorf("TOC JSON exceeds the limit of %d bytes", maxSize))
	}
	if got := digestOf(tocDigest, h); got != tocDigest {
		return in.n, refuse(ReasonTOCDigestMismatch, "", fmt.Errorf("TOC JSON has digest %s, annotation says %s", got, tocDigest))
	}
	return in.n, decErr
}

// Sink receives the entries of a TOC as it is decoded (FetchTo,
// Store.GetTo), in TOC order, each once it passed every check of Validate
// that needs no later entry. The checks of the TOC as a whole (its digest,
// the last file's chunks, parents, hard links, the compressed streams'
// sizes) end the stream: until FetchTo or GetTo returns without an error,
// what a sink built from the entries is not to be served.
type Sink interface {
	// Entry receives the next entry. e is only valid during the call (the
	// decoder reuses it): keep its fields (strings, the xattr map and its
	// values are not reused), never e.
	Entry(e *estargz.TOCEntry) error
}

// ExpectingSink is a Sink that makes room for the entries before they
// come: decoded as a stream, a TOC does not say how many it holds, and
// growing to fit copies what was built so far, again and again.
type ExpectingSink interface {
	Sink
	// Expect is called once, before the first entry, with an estimate of
	// the number of entries from the size of the TOC's JSON (one per
	// bytesPerEntry bytes, at most Limits.MaxEntries): more or fewer may
	// come.
	Expect(entries int)
}

// bytesPerEntry is what an entry of a TOC takes in its JSON at least,
// typically: a regular file's entry, with its digests, takes about 300
// bytes; a directory's or a symlink's about 150.
const bytesPerEntry = 200

// expectedEntries estimates how many entries size bytes of TOC JSON hold.
func expectedEntries(size int64, maxEntries int) int {
	return int(min(max(size, 0)/bytesPerEntry, int64(maxEntries)))
}

// validatedStream is the visitor that decodes a TOC into a Sink: it
// validates each entry before the sink sees it.
type validatedStream struct {
	v    *validator
	sink Sink
}

func (s *validatedStream) version(v int) error { return checkVersion(v) }

func (s *validatedStream) entry(i int, e *estargz.TOCEntry) error {
	if err := s.v.entry(i, e); err != nil {
		return err
	}
	return s.sink.Entry(e)
}

// decodeInto decodes, verifies and validates TOC JSON from r, jsonSize
// bytes as far as its container says, into sink (see decodeVerified and
// Validate): the TOC of a blob of blobSize bytes at tocOffset. It returns
// the JSON's size and the number of entries that name something (a file's
// chunk entries after its first are not counted).
func decodeInto(ctx context.Context, r io.Reader, jsonSize int64, tocDigest digest.Digest, blobSize, tocOffset int64, lim Limits, sink Sink) (size int64, entries int, _ error) {
	if err := checkPlacement(blobSize, tocOffset); err != nil {
		return 0, 0, err
	}
	expect := expectedEntries(jsonSize, lim.MaxEntries)
	v := newValidator(tocOffset)
	v.names = make([]string, 0, expect)
	v.kinds = make([]entryKind, 0, expect)
	if es, ok := sink.(ExpectingSink); ok {
		es.Expect(expect)
	}
	s := &validatedStream{v: v, sink: sink}
	size, err := decodeVerified(ctx, r, tocDigest, lim.MaxSize, lim.MaxEntries, s)
	if err != nil {
		return size, len(v.names), err
	}
	return size, len(v.names), s.v.finish()
}

// collector is the Sink of Fetch and Store.Get: it keeps every entry.
type collector struct {
	entries []*estargz.TOCEntry
}

func (c *collector) Entry(e *estargz.TOCEntry) error {
	kept := *e
	c.entries = append(c.entries, &kept)
	return nil
}

// jtoc returns what was collected as a validated TOC.
func (c *collector) jtoc() *estargz.JTOC {
	return &estargz.JTOC{Version: tocVersion, Entries: c.entries}
}

func digestOf(like digest.Digest, h hash.Hash) digest.Digest {
	return digest.NewDigest(like.Algorithm(), h)
}
