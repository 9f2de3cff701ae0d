package convert

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// adopt returns desc with the eStargz annotations if its gzip blob already
// is an eStargz blob whose table of contents names a digest for every chunk,
// and nil otherwise. Keeping such a blob, rather than rebuilding it, keeps
// its digest (registries that hold it need no new upload) and saves the
// build.
//
// The annotations are computed from the blob itself, which is as trusted as
// the manifest that pins the blob's digest.
func adopt(ctx context.Context, cs content.Provider, desc ocispec.Descriptor) (*ocispec.Descriptor, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("failed to open layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	sr := io.NewSectionReader(ra, 0, ra.Size())

	tocDigest, err := readTOCDigest(sr)
	if err != nil {
		log.G(ctx).WithError(err).Debug("layer is not eStargz")
		return nil, nil
	}
	diffID, usize, err := uncompressedDigest(sr)
	if err != nil {
		return nil, fmt.Errorf("failed to decompress eStargz layer %s: %w", desc.Digest, err)
	}

	out := layerDescriptor(desc)
	out.Annotations[estargz.TOCJSONDigestAnnotation] = tocDigest.String()
	out.Annotations[estargz.StoreUncompressedSizeAnnotation] = strconv.FormatInt(usize, 10)
	out.Annotations[labels.LabelUncompressed] = diffID.String()
	return out, nil
}

// readTOCDigest returns the digest of the TOC JSON of an eStargz blob (the
// current footer; legacy stargz has no chunk digests), or an error saying
// why sr is not one that a lazy mount can verify.
func readTOCDigest(sr *io.SectionReader) (digest.Digest, error) {
	size := sr.Size()
	if size < estargz.FooterSize {
		return "", fmt.Errorf("blob of %d bytes is smaller than a footer", size)
	}
	footer := make([]byte, estargz.FooterSize)
	if _, err := sr.ReadAt(footer, size-estargz.FooterSize); err != nil {
		return "", fmt.Errorf("failed to read footer: %w", err)
	}
	var d estargz.GzipDecompressor
	_, tocOffset, _, err := d.ParseFooter(footer)
	if err != nil {
		return "", err
	}
	// The TOC lies between its offset and the footer, and is not empty.
	if tocOffset < 0 || tocOffset >= size-estargz.FooterSize {
		return "", fmt.Errorf("TOC offset %d outside blob of %d bytes", tocOffset, size)
	}
	// Read to the blob's end: the footer is an empty gzip member, which
	// adds nothing to the TOC's stream.
	r, err := d.DecompressTOC(io.NewSectionReader(sr, tocOffset, size))
	if err != nil {
		return "", err
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("failed to read TOC: %w", err)
	}
	var toc estargz.JTOC
	if err := json.Unmarshal(raw, &toc); err != nil {
		return "", fmt.Errorf("failed to decode TOC: %w", err)
	}
	for _, e := range toc.Entries {
		if (e.Type == "chunk" || e.Type == "reg" && e.Size > 0) && e.ChunkDigest == "" {
			return "", fmt.Errorf("TOC entry %q has no chunk digest", e.Name)
		}
	}
	return digest.FromBytes(raw), nil
}

// uncompressedDigest returns the digest and size of the decompressed blob.
func uncompressedDigest(sr *io.SectionReader) (digest.Digest, int64, error) {
	zr, err := gzip.NewReader(io.NewSectionReader(sr, 0, sr.Size()))
	if err != nil {
		return "", 0, err
	}
	defer zr.Close()
	dgstr := digest.Canonical.Digester()
	n, err := io.Copy(dgstr.Hash(), zr)
	if err != nil {
		return "", 0, err
	}
	return dgstr.Digest(), n, nil
}
