package chunks

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Source is the layer blob chunks are read from. Each ReadAt call should be
// one bounded request (remote.Blob's is); a short read is an error.
type Source interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// VerifyingSource is a Source that checks each answer with verify before
// accepting it and retries the answers verify refuses (package remote's
// Blob does, under the read's one deadline). Corrupt bytes from a registry
// are then retried where every other fault is, never stacked here.
type VerifyingSource interface {
	Source
	ReadAtVerified(ctx context.Context, p []byte, off int64, verify func([]byte) error) (int, error)
}

// Defaults used when an Options field is left zero.
const (
	DefaultMemoryCacheSize = 16 << 20
	DefaultMaxRequestSize  = 4 << 20
	DefaultParallel        = 4
	DefaultReadAhead       = 512 << 10
	// DefaultReadAheadStart is the first read-ahead window of a layer,
	// and the window after a miss away from the last one.
	DefaultReadAheadStart = 64 << 10
	// DefaultSequentialPrefetch is enough to keep two fetches of a file
	// read sequentially in flight while the read is served.
	DefaultSequentialPrefetch = 2
)

// Options configures a Reader.
type Options struct {
	// MemoryCacheSize bounds the decompressed bytes of verified chunks kept
	// in memory, least recently used evicted first, when Memory is nil (the
	// Reader then has a memory tier of its own). Zero means the default; a
	// negative value keeps nothing, so every read fetches again. With
	// Memory set, its budget is used instead.
	MemoryCacheSize int64
	// Memory, if set, is the worker-wide memory tier the Reader shares
	// with the worker's other layers: one budget for all of them.
	Memory *Memory
	// Scheduler, if set, orders this Reader's range requests with those
	// of the worker's other layers, under a limit per Registry; nil sends
	// them at once (Parallel still bounds one read's).
	Scheduler *Scheduler
	// Registry names the registry (host) the source reads from, which
	// Scheduler limits requests per.
	Registry string
	// MaxRequestSize bounds the compressed bytes of one merged range
	// request. A single chunk larger than it is still fetched whole.
	MaxRequestSize int64
	// Parallel bounds the concurrent range requests of one read.
	Parallel int
	// LayerDigest names the layer in logs and errors.
	LayerDigest digest.Digest
	// Layout is every chunk of the layer in blob order, which read-ahead
	// extends fetches over. Nil disables read-ahead.
	Layout *Layout
	// ReadAhead is the compressed size a range request that must go to the
	// source for less is grown to: it is extended over the chunks of Layout
	// that follow (and then precede) it in the blob, as long as they are
	// contiguous and nobody holds or fetches them, and every chunk it
	// covers is verified and kept in memory. Small files that lie next to
	// each other are read together, so this trades some bytes per request
	// for far fewer requests. Zero means DefaultReadAhead; a negative value
	// disables read-ahead. It is capped at MaxRequestSize, and the chunks
	// one request reads ahead at a quarter of MemoryCacheSize (decompressed),
	// so that read-ahead never evicts most of what the cache holds; without
	// a memory cache there is no read-ahead.
	ReadAhead int64
	// ReadAheadStart is the window a miss starts with: a miss that starts
	// where the layer's last window ended (or up to a window past it) is
	// sequential and doubles the window, up to ReadAhead; any other miss
	// starts again from ReadAheadStart. A container's first command reads
	// a few scattered files, which a small window serves with few bytes
	// it does not need; a walk of the tree in blob order grows it. Zero
	// means DefaultReadAheadStart; it is capped at ReadAhead.
	ReadAheadStart int64
	// SequentialPrefetch is how many chunks of a file, after the last one
	// a sequential read of it reaches, are fetched in the background, so
	// that the fetches of a file read from start to end overlap instead of
	// each starting when the read before it is served. At most a few
	// chunks per Reader, and never more than half of MemoryCacheSize
	// (decompressed), are prefetched at once; a chunk that fails is
	// dropped and fails no read. Zero means DefaultSequentialPrefetch; a
	// negative value disables it, and so does having no memory cache.
	SequentialPrefetch int
	// Disk, if set, is looked up before the source, and every chunk
	// fetched and verified from the source is put there.
	Disk DiskCache
	// Context bounds the Reader's background work (sequential prefetch):
	// cancel it when the layer is no longer served. Nil means
	// context.Background(), which nothing cancels.
	Context context.Context
}

func (o Options) withDefaults() Options {
	switch {
	case o.Memory != nil:
		o.MemoryCacheSize = o.Memory.Budget()
	case o.MemoryCacheSize == 0:
		o.MemoryCacheSize = DefaultMemoryCacheSize
	case o.MemoryCacheSize < 0:
		o.MemoryCacheSize = 0
	}
	if o.Memory == nil {
		o.Memory = NewMemory(o.MemoryCacheSize)
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = DefaultMaxRequestSize
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	switch {
	case o.ReadAhead == 0:
		o.ReadAhead = DefaultReadAhead
	case o.ReadAhead < 0:
		o.ReadAhead = 0
	}
	o.ReadAhead = min(o.ReadAhead, o.MaxRequestSize)
	if o.Layout == nil || o.MemoryCacheSize == 0 {
		o.ReadAhead = 0
	}
	if o.ReadAheadStart <= 0 {
		o.ReadAheadStart = DefaultReadAheadStart
	}
	o.ReadAheadStart = min(o.ReadAheadStart, o.ReadAhead)
	switch {
	case o.SequentialPrefetch == 0:
		o.SequentialPrefetch = DefaultSequentialPrefetch
	case o.SequentialPrefetch < 0:
		o.SequentialPrefetch = 0
	}
	if o.MemoryCacheSize == 0 {
		// What is prefetched could only be kept in memory.
		o.SequentialPrefetch = 0
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	return o
}

// Reader serves the verified, decompressed bytes of one layer's files. It
// is safe for concurrent use; concurrent reads of one chunk share one
// fetch.
type Reader struct {
	src  Source
	opts Options

	mu       sync.Mutex
	cache    *Memory // the worker's memory tier, or the Reader's own
	inflight map[fetchKey]*pending
	prefetch prefetchState
	// raWindow is the read-ahead window of the next miss, and raEnd where
	// the last window ended in the blob (readahead.go).
	raWindow, raEnd int64

	// background tracks the prefetch goroutines, which end soon after
	// Options.Context does.
	background sync.WaitGroup
	// prefetchDropped counts prefetched chunks that failed.
	prefetchDropped atomic.Int64
	// outage logs an unreachable source once per outage.
	outage outage

	gzipReaders sync.Pool // of *gzip.Reader, to reuse their buffers
}

// NewReader returns a Reader of the chunks of blob src.
func NewReader(src Source, opts Options) *Reader {
	opts = opts.withDefaults()
	return &Reader{
		src:      src,
		opts:     opts,
		cache:    opts.Memory,
		inflight: make(map[fetchKey]*pending),
		prefetch: prefetchState{lastEnd: make(map[fetchKey]int64)},
		raWindow: opts.ReadAheadStart,
		raEnd:    -1,
	}
}

// ReadAt fills p with the decompressed bytes of the file at off. file is
// the file's whole chunk list, sorted by Offset, contiguous from 0. Only
// verified bytes are returned; on error n is 0. Like io.ReaderAt, a read
// that reaches the end of the file returns io.EOF with the bytes up to it.
func (r *Reader) ReadAt(ctx context.Context, file []Chunk, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("layer %s: negative file offset %d: %w", r.opts.LayerDigest, off, errdefs.ErrInvalidArgument)
	}
	size := fileSize(file)
	if off >= size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), size)
	if end == off {
		return 0, nil
	}
	need, err := r.covering(file, off, end)
	if err != nil {
		return 0, err
	}
	// Started before this read's own fetch, so that both overlap.
	r.prefetchSequential(ctx, file, off, end)
	data, err := r.load(ctx, need)
	if err != nil {
		return 0, err
	}
	for i, c := range need {
		from := max(off, c.Offset)
		to := min(end, c.Offset+c.Size)
		copy(p[from-off:to-off], data[i][from-c.Offset:to-c.Offset])
	}
	n := int(end - off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func fileSize(file []Chunk) int64 {
	if len(file) == 0 {
		return 0
	}
	last := file[len(file)-1]
	return last.Offset + last.Size
}

// covering returns the chunks of file that hold [off, end), refusing a
// chunk list with gaps, overlaps or impossible values: a gap would leave
// bytes of p that no digest covers.
func (r *Reader) covering(file []Chunk, off, end int64) ([]Chunk, error) {
	i := sort.Search(len(file), func(i int) bool { return file[i].Offset+file[i].Size > off })
	var need []Chunk
	next := off
	for ; i < len(file) && file[i].Offset < end; i++ {
		c := file[i]
		contiguous := c.Offset == next || (len(need) == 0 && c.Offset <= off)
		if !contiguous || c.Size <= 0 || c.BlobSize <= 0 || c.BlobOffset < 0 || c.InnerOffset < 0 {
			return nil, fmt.Errorf("layer %s: chunk at file offset %d (size %d, blob offset %d, blob size %d, inner offset %d) does not fit the chunk list: %w",
				r.opts.LayerDigest, c.Offset, c.Size, c.BlobOffset, c.BlobSize, c.InnerOffset, errdefs.ErrInvalidArgument)
		}
		next = c.Offset + c.Size
		need = append(need, c)
	}
	if next < end {
		return nil, fmt.Errorf("layer %s: no chunk holds file offset %d: %w", r.opts.LayerDigest, next, errdefs.ErrInvalidArgument)
	}
	return need, nil
}
