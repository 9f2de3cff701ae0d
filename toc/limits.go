package toc

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// MaxChunkSize bounds the decompressed size of one chunk: a reader holds a
// whole chunk in memory to verify it before serving any of it. eStargz
// builds 4 MiB chunks by default.
const MaxChunkSize = 64 << 20

// Limits bound the resources a layer's TOC may claim. estargz itself has no
// limits: a TOC is trusted up to these sizes and refused beyond them.
type Limits struct {
	// MaxCompressedSize bounds the compressed TOC in the blob (blob size −
	// footer − TOC offset); it is checked before the TOC is fetched.
	MaxCompressedSize int64
	// MaxSize bounds the uncompressed TOC JSON; it is enforced while
	// decompressing, so a gzip bomb stops at MaxSize+1 bytes.
	MaxSize int64
	// MaxEntries bounds the number of TOC entries (files and chunks); it is
	// enforced while decoding, so a TOC of many tiny entries cannot make the
	// worker allocate far more than MaxSize.
	MaxEntries int
}

// DefaultLimits returns limits that admit large real-world layers while
// bounding a worker's memory for one TOC to about a GiB. For scale
// (BenchmarkFetch300k): a 300,000-file layer has about 100 MiB of TOC JSON,
// 13 MiB compressed; Fetch holds its decoded entries (about 125 MiB), while
// a worker decoding it into its tree through FetchTo peaks at about 120 MiB
// for the whole process (BenchmarkLoadTOC300k in package worker).
func DefaultLimits() Limits {
	return Limits{
		MaxCompressedSize: 64 << 20,
		MaxSize:           256 << 20,
		MaxEntries:        1_000_000,
	}
}

// check refuses limits that would refuse every layer: that is a
// configuration error, not a property of the layer.
func (l Limits) check() error {
	if l.MaxCompressedSize <= 0 || l.MaxSize <= 0 || l.MaxEntries <= 0 {
		return fmt.Errorf("toc limits %+v must all be positive: %w", l, errdefs.ErrInvalidArgument)
	}
	return nil
}
