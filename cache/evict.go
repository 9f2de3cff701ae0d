package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/metrics"
)

// staleTemp is the age after which a temporary file is the remains of a
// writer that died mid-write: a live write takes milliseconds.
const staleTemp = time.Hour

// Evictor keeps a cache directory within a budget. Exactly one process
// (the snapshotter) runs one per directory: two would not corrupt anything,
// but would evict more than needed.
type Evictor struct {
	dir    string
	budget int64

	// indexes are the layer indexes read so far; only passes use them.
	indexes map[digest.Digest][]ChunkRef

	mu    sync.Mutex
	usage map[digest.Digest]layerUsage // by layer, as of the last pass
}

// NewEvictor returns an Evictor keeping dir at or under budget bytes (the
// sum of the chunk files' sizes).
func NewEvictor(dir string, budget int64) *Evictor {
	return &Evictor{dir: dir, budget: budget, indexes: map[digest.Digest][]ChunkRef{}}
}

// PassResult is what one eviction pass found and did.
type PassResult struct {
	Files, Bytes          int64 // held after the pass
	Evicted, EvictedBytes int64
	StaleTemps            int64
}

type cachedFile struct {
	path    string
	size    int64
	atime   time.Time
	evicted bool
}

// Pass walks the cache once and removes the least recently used chunks
// until what remains fits the budget, and temporary files left by writers
// that died, then recomputes each recorded layer's usage (CachedBytes). A
// chunk being read when it is removed is still read whole (see the package
// documentation). Passes must not run concurrently.
func (e *Evictor) Pass(ctx context.Context) (PassResult, error) {
	var res PassResult
	files, total, err := e.scan(ctx)
	if err != nil {
		return res, err
	}
	if total > e.budget {
		// Oldest first; the path breaks ties so that passes are repeatable.
		slices.SortFunc(files, func(a, b cachedFile) int {
			if c := a.atime.Compare(b.atime); c != 0 {
				return c
			}
			return strings.Compare(a.path, b.path)
		})
		for i := range files {
			f := &files[i]
			if total <= e.budget {
				break
			}
			if err := os.Remove(f.path); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					log.G(ctx).WithError(err).WithField("path", f.path).Warn("failed to evict cached chunk")
				}
				continue
			}
			f.evicted = true
			total -= f.size
			res.Evicted++
			res.EvictedBytes += f.size
		}
		metrics.CacheEvictions.Add(float64(res.Evicted))
		metrics.CacheEvictedBytes.Add(float64(res.EvictedBytes))
	}
	res.Files, res.Bytes = int64(len(files))-res.Evicted, total
	metrics.CacheSize.Set(float64(total))
	res.StaleTemps = e.removeStaleTemps(ctx)
	e.updateUsage(ctx, files)
	return res, nil
}

// scan lists every chunk file with its size and atime.
func (e *Evictor) scan(ctx context.Context) ([]cachedFile, int64, error) {
	var files []cachedFile
	var total int64
	root := filepath.Join(e.dir, chunksDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return nil // evicted or replaced meanwhile
		}
		files = append(files, cachedFile{path: path, size: st.Size, atime: time.Unix(st.Atim.Unix())})
		total += st.Size
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("failed to scan chunk cache %s: %w", root, err)
	}
	return files, total, nil
}

// removeStaleTemps removes temporary files older than staleTemp.
func (e *Evictor) removeStaleTemps(ctx context.Context) int64 {
	dir := filepath.Join(e.dir, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.G(ctx).WithError(err).WithField("path", dir).Warn("failed to list the cache's temporary files")
		return 0
	}
	var n int64
	for _, ent := range entries {
		info, err := ent.Info()
		if err != nil || time.Since(info.ModTime()) < staleTemp {
			continue
		}
		if os.Remove(filepath.Join(dir, ent.Name())) == nil {
			n++
		}
	}
	return n
}

// Run makes a pass now and then every interval until ctx ends, logging
// what each pass evicted. Between passes the cache may exceed its budget
// by what workers write in one interval.
func (e *Evictor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := e.Pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.G(ctx).WithError(err).Warn("chunk cache eviction pass failed")
		case res.Evicted > 0 || res.StaleTemps > 0:
			log.G(ctx).WithField("evicted", res.Evicted).WithField("evicted_bytes", res.EvictedBytes).
				WithField("stale_temps", res.StaleTemps).WithField("cache_bytes", res.Bytes).
				WithField("budget_bytes", e.budget).Info("chunk cache evicted")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
