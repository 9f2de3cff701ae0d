package toc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Prune removes the stored TOCs that keep does not want and whose metadata
// was written before cutoff, and returns how many it removed. The cutoff
// protects a TOC a worker has just stored for a layer whose snapshot is
// not committed yet. The TOC goes first (compressed, or an older lazyfs's
// JSON): a Get racing with Prune finds the metadata without the TOC and
// gets errdefs.ErrNotFound, as if the TOC had never been stored (the
// worker then fetches it again).
func (s *Store) Prune(keep func(digest.Digest) bool, cutoff time.Time) (int, error) {
	algos, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("failed to read TOC store %s: %w", s.dir, err)
	}
	removed := 0
	for _, a := range algos {
		if !a.IsDir() {
			continue
		}
		dir := filepath.Join(s.dir, a.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			return removed, fmt.Errorf("failed to read TOC store %s: %w", dir, err)
		}
		for _, f := range files {
			encoded, ok := strings.CutSuffix(f.Name(), metaSuffix)
			if !ok || strings.HasPrefix(f.Name(), ".") {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), encoded)
			if d.Validate() != nil || keep(d) {
				continue
			}
			info, err := f.Info()
			if err != nil || !info.ModTime().Before(cutoff) {
				continue // gone meanwhile, or young
			}
			for _, name := range []string{encoded + compressedSuffix, encoded + tocSuffix, encoded + metaSuffix} {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return removed, fmt.Errorf("failed to remove stored TOC %s: %w", d, err)
				}
			}
			removed++
		}
	}
	return removed, nil
}
