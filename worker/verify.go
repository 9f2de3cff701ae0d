package worker

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// Verify fetches the whole blob of a mount's layer from the registry and
// returns its compressed and uncompressed digests, for the snapshotter to
// judge against the chain ID (DESIGN.md: a chain ID's bytes are proven, not
// trusted). The blob is hostile input until then, which is why it is read
// here and never in the snapshotter; it is streamed, never held whole.
func (w *Worker) Verify(ctx context.Context, mountID string) (daemonapi.VerifyInfo, error) {
	w.mu.Lock()
	m, ok := w.mounts[mountID]
	w.mu.Unlock()
	if !ok {
		return daemonapi.VerifyInfo{}, fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).
		WithField("layer_digest", m.req.LayerDigest).
		WithField("image_ref", m.req.ImageRef))
	dgst, err := digest.Parse(m.req.LayerDigest)
	if err != nil {
		return daemonapi.VerifyInfo{}, fmt.Errorf("mount %s: layer digest: %w: %w", mountID, errdefs.ErrInternal, err)
	}
	start := time.Now()
	blob, err := w.opts.Resolver.Blob(ctx, m.req.ImageRef, dgst)
	if err != nil {
		return daemonapi.VerifyInfo{}, fmt.Errorf("mount %s: %w", mountID, err)
	}
	// Background work: it stands aside for the reads of the worker's
	// containers, and goes at most at [fetch] background_rate.
	var stream io.Reader = blob.Stream(ctx)
	var yr *yieldReader
	if w.opts.Chunks.Scheduler != nil {
		yr = &yieldReader{ctx: ctx, r: stream, sched: w.opts.Chunks.Scheduler, registry: registryOf(m.req.ImageRef)}
		stream = yr
	}
	src := limitRate(ctx, stream, w.opts.ProofRate)
	var cacher *chunkCacher
	if w.opts.Cache != nil {
		// The proof is the layer's background fetch too (proofcache.go).
		cacher = newChunkCacher(ctx, w.opts.Cache, m.chunks)
		if yr != nil {
			cacher.yield = yr.wait
		}
		src = io.TeeReader(src, cacher)
	}
	info, err := digestBlob(src)
	if err != nil {
		return daemonapi.VerifyInfo{}, fmt.Errorf("mount %s: failed to read blob %s: %w", mountID, dgst, err)
	}
	if cacher != nil {
		// Written before the verdict: a proven layer is a cached one.
		w.opts.Cache.Flush()
		cacher.logResult(ctx)
	}
	info.MountID, info.LayerDigest = mountID, m.req.LayerDigest
	log.G(ctx).WithFields(log.Fields{
		"digest":            info.Digest,
		"diff_id":           info.DiffID,
		"size":              info.Size,
		"uncompressed_size": info.UncompressedSize,
		"duration":          time.Since(start),
	}).Info("layer blob digested")
	return info, nil
}

// SetVerdict records the snapshotter's verdict on a mount, which Info then
// reports.
func (w *Worker) SetVerdict(ctx context.Context, mountID string, v daemonapi.VerdictRequest) error {
	w.mu.Lock()
	m, ok := w.mounts[mountID]
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("mount %s: %w", mountID, errdefs.ErrNotFound)
	}
	m.mu.Lock()
	m.verification, m.diffID = v.State, v.DiffID
	m.mu.Unlock()
	log.G(ctx).WithField("verification", v.State).WithField("diff_id", v.DiffID).Info("verdict on the layer recorded")
	if v.State == daemonapi.Forged {
		m.quarantine(ctx)
	}
	return nil
}

// quarantine makes a forged layer's mount answer EIO from now on, to every
// reader (issue 14, point 2), and drops what the kernel caches of it, so
// that no container reads another byte of it, cached or not.
func (m *mount) quarantine(ctx context.Context) {
	m.fs.Quarantine()
	m.mu.Lock()
	defer m.mu.Unlock() // held: stopServing cannot close m.fd meanwhile
	if m.fd < 0 || m.state != daemonapi.MountServing {
		return // not served yet: a later attach serves it quarantined
	}
	if err := m.fs.InvalidateAll(m.fd); err != nil {
		log.G(ctx).WithError(err).Warn("failed to drop the kernel's cache of a quarantined layer; cached pages may still be read")
	}
	log.G(ctx).WithField("layer_digest", m.req.LayerDigest).WithField("image_ref", m.req.ImageRef).Error("layer quarantined: its mount answers EIO from now on")
}

// digestBlob reads a gzip layer blob to its end and returns the digest and
// size of its bytes and of their decompressed stream (every gzip member in
// turn: an eStargz blob is many). A blob that does not decompress is not an
// error: its DiffID is left empty and DecompressError says why, since that
// too is a finding about the blob. Only a failure to read it is an error.
func digestBlob(r io.Reader) (daemonapi.VerifyInfo, error) {
	compressed := sha256.New()
	counted := &countingReader{r: io.TeeReader(r, compressed)}
	var info daemonapi.VerifyInfo

	uncompressed := sha256.New()
	n, derr := decompress(uncompressed, counted)
	if counted.err != nil {
		// The reader failed, not the decompression: nothing is known.
		return info, counted.err
	}
	// The compressed digest covers every byte, also those after where
	// decompression stopped.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return info, err
	}
	info.Digest = digest.NewDigest(digest.SHA256, compressed).String()
	info.Size = counted.n
	if derr != nil {
		info.DecompressError = derr.Error()
		return info, nil
	}
	info.DiffID = digest.NewDigest(digest.SHA256, uncompressed).String()
	info.UncompressedSize = n
	return info, nil
}

func decompress(dst io.Writer, src io.Reader) (int64, error) {
	zr, err := gzip.NewReader(src)
	if err != nil {
		return 0, err
	}
	// Multistream is the default: the members are read as one stream.
	return io.Copy(dst, zr)
}

// countingReader counts the bytes read and remembers a read error, so that
// one of the source can be told from one of the decompressor.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
