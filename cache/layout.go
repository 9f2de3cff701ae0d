package cache

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Directories under the cache directory.
const (
	chunksDir = "chunks"
	tmpDir    = "tmp"
)

// chunkPath returns where the chunk with digest d is kept under dir. The
// digest is validated first: its encoded part becomes a file name.
func chunkPath(dir string, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("chunk digest %q: %w: %w", d, errdefs.ErrInvalidArgument, err)
	}
	enc := d.Encoded()
	// 256 subdirectories keep each directory small enough for fast lookups
	// on any file system, even with millions of chunks.
	return filepath.Join(dir, chunksDir, d.Algorithm().String(), enc[:2], enc), nil
}

// digestOf is the inverse of chunkPath for a path under dir/chunks, for
// logs and metrics: "" when the path is not a chunk's.
func digestOf(path string) digest.Digest {
	alg := filepath.Base(filepath.Dir(filepath.Dir(path)))
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), filepath.Base(path))
	if d.Validate() != nil {
		return ""
	}
	return d
}
