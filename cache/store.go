package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/metrics"
)

// touchEvery is how stale a chunk's atime may get before a read sets it
// again: eviction needs recency to the minute, not a write per read.
const touchEvery = time.Minute

// DefaultMaxQueued bounds the bytes waiting to be written (see Options).
const DefaultMaxQueued = 16 << 20

// testHookOpened, set by tests only, runs when Get has opened a file and
// not yet read it.
var testHookOpened func(path string)

// Options configure a Store.
type Options struct {
	// MaxQueued bounds the decompressed bytes Put holds while they wait to
	// be written. A Put beyond it is dropped (counted): the chunk is still
	// served from memory, and fetched again if needed after it left
	// memory. Zero means DefaultMaxQueued.
	MaxQueued int64
}

// Store reads and writes chunks in a cache directory. It is safe for
// concurrent use, and several processes may use one directory at once.
type Store struct {
	dir  string
	opts Options
	// ctx carries the logger of the process for the background writer.
	ctx context.Context

	writer writer
}

// Open returns the Store of dir, creating its directories (mode 0700:
// chunks are image contents, which may be private).
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	for _, d := range []string{dir, filepath.Join(dir, chunksDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create cache directory: %w", err)
		}
	}
	s := &Store{dir: dir, opts: opts, ctx: ctx}
	s.writer.init()
	return s, nil
}

// Dir returns the cache directory.
func (s *Store) Dir() string { return s.dir }

// Get returns the decompressed bytes of the chunk with digest d and size
// size, verified, and whether it had them. A missing chunk, one that fails
// verification (deleted and counted) and one that cannot be read (logged)
// are all misses: the caller fetches the chunk from the registry.
func (s *Store) Get(ctx context.Context, d digest.Digest, size int64) ([]byte, bool) {
	data, err := s.get(ctx, d, size)
	if err != nil {
		metrics.CacheMisses.Inc()
		if !errors.Is(err, fs.ErrNotExist) {
			log.G(ctx).WithError(err).WithField("chunk_digest", d).Warn("chunk not served from the disk cache")
		}
		return nil, false
	}
	metrics.CacheHits.Inc()
	metrics.CacheReadBytes.Add(float64(len(data)))
	return data, true
}

func (s *Store) get(ctx context.Context, d digest.Digest, size int64) ([]byte, error) {
	path, err := chunkPath(s.dir, d)
	if err != nil {
		return nil, err
	}
	// Everything below reads through f: if the evictor unlinks the file
	// now, Linux keeps its inode until f is closed, so the read completes.
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if testHookOpened != nil {
		testHookOpened(path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("failed to stat cached chunk: %w", err)
	}
	if st.Size != size {
		// Either the file or the caller's chunk list is wrong (a hostile
		// TOC may give a shared digest another size): only a file that
		// fails its digest is deleted, so no layer can make another lose
		// a good chunk. Hashed as a stream: a damaged file may be huge.
		dg := d.Algorithm().Digester()
		if _, err := io.Copy(dg.Hash(), f); err == nil && dg.Digest() == d {
			return nil, fmt.Errorf("cached chunk has %d bytes, the chunk list says %d: %w", st.Size, size, fs.ErrNotExist)
		}
		s.discard(ctx, path, &st, fmt.Sprintf("file has %d bytes, the chunk %d", st.Size, size))
		return nil, fs.ErrNotExist
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("failed to read cached chunk: %w", err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		s.discard(ctx, path, &st, "file has digest "+got.String())
		return nil, fs.ErrNotExist
	}
	touch(path, &st)
	return data, nil
}

// discard deletes a cache file that does not hold what its name says, but
// only if it is still the file that was read: a writer may have renamed a
// good copy over it meanwhile.
func (s *Store) discard(ctx context.Context, path string, read *unix.Stat_t, why string) {
	metrics.CacheCorrupt.Inc()
	l := log.G(ctx).WithField("chunk_digest", digestOf(path)).WithField("path", path).WithField("reason", why)
	var now unix.Stat_t
	if err := unix.Lstat(path, &now); err != nil || now.Ino != read.Ino || now.Dev != read.Dev {
		l.Warn("corrupt chunk in the disk cache, replaced meanwhile")
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.WithError(err).Error("corrupt chunk in the disk cache, failed to delete it")
		return
	}
	l.Warn("corrupt chunk in the disk cache deleted; fetching it again")
}

// touch marks a chunk used now (its atime) unless it was marked within
// touchEvery. Failing only makes eviction less exact, so errors are ignored.
func touch(path string, st *unix.Stat_t) {
	now := time.Now()
	if now.Sub(time.Unix(st.Atim.Unix())) < touchEvery {
		return
	}
	ts := []unix.Timespec{unix.NsecToTimespec(now.UnixNano()), {Nsec: unix.UTIME_OMIT}}
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// Put queues data, the verified decompressed bytes of the chunk with digest
// d, to be written in the background; it never blocks on the disk. data
// must not be modified afterwards. See Options.MaxQueued.
func (s *Store) Put(ctx context.Context, d digest.Digest, data []byte) {
	s.writer.put(s, d, data)
}

// Flush waits until every chunk queued before it was written (or failed).
func (s *Store) Flush() { s.writer.flush() }

// Close writes what is queued and stops the background writer. Put after
// Close drops the chunk.
func (s *Store) Close() error {
	s.writer.close()
	return nil
}
