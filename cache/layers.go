package cache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// layersDir holds one index per layer: the chunks its files use, which is
// what lets the snapshotter report a layer's cached bytes without parsing
// its TOC (parsing layer metadata is the workers' job).
const layersDir = "layers"

// ChunkRef is one chunk a layer's files use.
type ChunkRef struct {
	Digest digest.Digest
	Size   int64
}

// PutLayer records the chunks the files of layer use (refs may repeat a
// chunk), once per layer: an index is immutable, like the layer. The
// worker that loads a layer calls it; the Evictor reads it. It sorts refs
// by digest (to drop repeats without a set of every digest) and writes
// the index as it goes: a layer of 300,000 chunks costs it no more than
// refs.
func (s *Store) PutLayer(ctx context.Context, layer digest.Digest, refs []ChunkRef) error {
	path, err := layerPath(s.dir, layer)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil // recorded already, by this worker or another
	}
	slices.SortStableFunc(refs, func(a, b ChunkRef) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return s.writeFile(path, "layer-"+layer.Encoded(), func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 64<<10)
		for i, r := range refs {
			if i > 0 && refs[i-1].Digest == r.Digest || r.Digest.Validate() != nil || r.Size < 0 {
				continue
			}
			if _, err := fmt.Fprintf(bw, "%s %d\n", r.Digest, r.Size); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

func layerPath(dir string, layer digest.Digest) (string, error) {
	if err := layer.Validate(); err != nil {
		return "", fmt.Errorf("layer digest %q: %w: %w", layer, errdefs.ErrInvalidArgument, err)
	}
	return filepath.Join(dir, layersDir, layer.Algorithm().String(), layer.Encoded()), nil
}

// readLayer parses a layer index, refusing any line it did not write.
func readLayer(path string) ([]ChunkRef, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var refs []ChunkRef
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		// A line without its space leaves the size empty, which does
		// not parse.
		ds, ss, _ := strings.Cut(sc.Text(), " ")
		d, derr := digest.Parse(ds)
		size, serr := strconv.ParseInt(ss, 10, 64)
		if derr != nil || serr != nil || size < 0 {
			return nil, fmt.Errorf("layer index %s:%d: malformed line: %w", path, line, errdefs.ErrDataLoss)
		}
		refs = append(refs, ChunkRef{Digest: d, Size: size})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read layer index %s: %w", path, err)
	}
	return refs, nil
}
