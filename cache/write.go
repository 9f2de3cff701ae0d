package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/metrics"
)

// write stores data as the chunk d, atomically: the bytes are written to a
// temporary file in the same file system and fsynced before the rename, so
// that after a crash the name holds either nothing or the whole chunk
// (without the fsync, a file system may persist the rename before the data
// and leave a torn file under the name).
func (s *Store) write(d digest.Digest, data []byte) (err error) {
	path, err := chunkPath(s.dir, d)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil // another worker wrote it; equal digests are equal bytes
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), d.Encoded()+".*")
	if err != nil {
		return fmt.Errorf("failed to create cache file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write cache file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync cache file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close cache file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("failed to create cache directory: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("failed to rename cache file into place: %w", err)
	}
	return nil
}

// writer is the Store's background writer: one goroutine, started by the
// first Put, writing queued chunks in order.
type writer struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when the queue or busy changes
	queue   []job
	queued  map[digest.Digest]bool
	bytes   int64 // of queue
	busy    bool  // a job was taken from the queue and is being written
	started bool
	closed  bool
	done    chan struct{} // closed when the goroutine has returned
}

type job struct {
	d    digest.Digest
	data []byte
}

func (w *writer) init() {
	w.cond = sync.NewCond(&w.mu)
	w.queued = map[digest.Digest]bool{}
	w.done = make(chan struct{})
}

func (w *writer) put(s *Store, d digest.Digest, data []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queued[d] {
		return
	}
	if w.closed || w.bytes+int64(len(data)) > s.opts.MaxQueued {
		metrics.CacheWriteFailures.WithLabelValues("dropped").Inc()
		return
	}
	w.queue = append(w.queue, job{d, data})
	w.queued[d] = true
	w.bytes += int64(len(data))
	if !w.started {
		w.started = true
		go w.run(s)
	}
	w.cond.Broadcast()
}

func (w *writer) run(s *Store) {
	defer close(w.done)
	w.mu.Lock()
	for {
		for len(w.queue) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			return
		}
		j := w.queue[0]
		w.queue[0] = job{}
		w.queue = w.queue[1:]
		w.busy = true
		w.mu.Unlock()

		if err := s.write(j.d, j.data); err != nil {
			metrics.CacheWriteFailures.WithLabelValues("error").Inc()
			log.G(s.ctx).WithError(err).WithField("chunk_digest", j.d).Warn("failed to write chunk to the disk cache")
		} else {
			metrics.CacheWrites.Inc()
			metrics.CacheWriteBytes.Add(float64(len(j.data)))
		}

		w.mu.Lock()
		delete(w.queued, j.d)
		w.bytes -= int64(len(j.data))
		w.busy = false
		w.cond.Broadcast()
	}
}

func (w *writer) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 || w.busy {
		w.cond.Wait()
	}
}

func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	started := w.started
	w.cond.Broadcast()
	w.mu.Unlock()
	if started {
		<-w.done
	}
}
