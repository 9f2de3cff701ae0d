// Package toc fetches, bounds, verifies, validates and stores the table of
// contents (TOC) of an eStargz layer.
//
// It runs inside the worker (lazyfsd): the TOC is hostile input until it has
// passed through this package, and parsing it in the worker keeps the
// snapshotter safe from it. The flow is:
//
//	Fetch    footer (one range request) → TOC offset → size checked against
//	         Limits.MaxCompressedSize → TOC (one range request) → gzip → tar →
//	         stargz.index.json, read with Limits.MaxSize enforced → digest of the
//	         raw JSON compared with the layer's
//	         containerd.io/snapshot/stargz/toc.digest annotation → decoded
//	         with Limits.MaxEntries enforced → Validate.
//	Validate refuses layers that a lazy mount could not serve safely: unsafe
//	         or duplicate names, bad hard links, offsets or sizes outside the
//	         blob or the file, chunks without a digest to verify against.
//	Store    keeps the exact verified TOC bytes on disk so that a restarted
//	         worker can serve the layer again without the registry; Get
//	         verifies the digest and validates again.
//
// Every refusal is a *RefusedError (errdefs.ErrInvalidArgument): the
// snapshotter then falls back to containerd's ordinary, hardened unpack.
// Registry and I/O errors are returned wrapped as they are, never as a
// RefusedError, so that callers can tell a hostile layer from a flaky registry.
//
// Only gzip eStargz (and the legacy 47-byte stargz footer) is supported;
// zstd:chunked and unknown formats are refused as unsupported_format.
//
// Validate checks the raw entry names: estargz's own reader silently cleans
// "../x" into "x", which would hide an attack from any later check.
package toc
