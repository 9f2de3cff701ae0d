package snapshot

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/metrics"
)

// Prover proves a lazily mounted layer's identity (DESIGN.md: "A chain ID's
// bytes are proven, not trusted"). The worker side only digests the blob;
// the snapshotter judges the digests against the chain ID.
type Prover interface {
	// Verify fetches the whole blob of the layer mounted as id and
	// returns its compressed and uncompressed digests. It takes as long
	// as a download of the blob.
	Verify(ctx context.Context, id string) (layer.BlobDigests, error)
	// SetVerdict tells the server of mount id what the proof found, so
	// that it reports it (and, later, refuses to serve a forged layer).
	SetVerdict(ctx context.Context, id string, forged bool, diffID digest.Digest) error
}

// DefaultProofWait bounds how long a Prepare that meets another blob at an
// existing chain ID waits for the stored layer's proof: a download of a
// large layer over a slow link, well within the minutes a pull may take.
const DefaultProofWait = 3 * time.Minute

// WithProofWait sets how long a Prepare waits for a stored layer's proof
// before it fails with a clear error (the proof goes on in the background,
// so a retried pull finds it done).
func WithProofWait(d time.Duration) Opt {
	return func(o *options) { o.proofWait = d }
}

// proof is the outcome of proving one stored snapshot. err is set when the
// proof could not be made (the registry is down, the blob it served is not
// the layer's digest): nothing is known, nothing is recorded, and a later
// Prepare tries again.
type proof struct {
	forged bool
	diffID digest.Digest // what the blob decompresses to; "" if it does not
	err    error
}

// proofCall is one proof in flight; done is closed when res is set.
type proofCall struct {
	done chan struct{}
	res  proof
}

// proofs runs at most one proof per stored snapshot at a time.
type proofs struct {
	mu      sync.Mutex
	running map[string]*proofCall // by snapshot name
}

// prove starts the proof of the committed remote snapshot name, or joins
// the one running. The proof runs under the snapshotter's context, not the
// caller's: a requester that stops waiting leaves it running, and its
// outcome is recorded for the next one. requester names the image whose
// Prepare asked for it, for the incident report.
func (s *Snapshotter) prove(ctx context.Context, name, requester string) *proofCall {
	s.proofs.mu.Lock()
	defer s.proofs.mu.Unlock()
	if c, ok := s.proofs.running[name]; ok {
		return c
	}
	c := &proofCall{done: make(chan struct{})}
	s.proofs.running[name] = c
	pctx := log.WithLogger(s.ctx, log.G(ctx).WithField("requested_by", requester))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.res = s.runProof(pctx, name)
		s.proofs.mu.Lock()
		delete(s.proofs.running, name)
		s.proofs.mu.Unlock()
		close(c.done)
	}()
	return c
}

// runProof proves snapshot name once and records the outcome in its labels.
func (s *Snapshotter) runProof(ctx context.Context, name string) proof {
	id, info, parentChain, err := s.storedForProof(ctx, name)
	if err != nil {
		return proof{err: err}
	}
	if p, ok := recordedProof(info); ok {
		return p // proven meanwhile, by an earlier call
	}
	layer, err := labels.ParseLayer(info.Labels)
	if err != nil {
		return proof{err: fmt.Errorf("snapshot %s: %w", name, err)}
	}
	chainID := digest.Digest(info.Labels[labels.TargetSnapshotRef])
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{
		"snapshot":     name,
		"chain_id":     chainID,
		"layer_digest": layer.LayerDigest,
		"image_ref":    layer.ImageRef,
	}))

	start := time.Now()
	got, err := s.remote.Verify(ctx, id)
	if err == nil && got.Digest != layer.LayerDigest {
		// The registry served other bytes than the digest it was asked
		// for: a fault of the transfer or of the registry, not a finding
		// about the layer. Nothing is recorded; the pull fails clearly.
		err = fmt.Errorf("registry served blob %s (%d bytes) for layer %s: %w", got.Digest, got.Size, layer.LayerDigest, errdefs.ErrDataLoss)
	}
	if err != nil {
		metrics.LayerProofs.WithLabelValues("error").Inc()
		log.G(ctx).WithError(err).Warn("failed to prove a lazily mounted layer")
		return proof{err: fmt.Errorf("failed to prove layer %s at chain ID %s: %w", layer.LayerDigest, chainID, err)}
	}

	p := proof{diffID: got.DiffID}
	p.forged = got.DiffID == "" || labels.ChainID(parentChain, got.DiffID) != chainID
	if err := s.recordProof(ctx, name, p); err != nil {
		return proof{err: err}
	}
	if err := s.remote.SetVerdict(ctx, id, p.forged, p.diffID); err != nil {
		log.G(ctx).WithError(err).Warn("failed to tell the worker the verdict on its layer")
	}
	duration := time.Since(start)
	if !p.forged {
		metrics.LayerProofs.WithLabelValues("verified").Inc()
		log.G(ctx).WithField("diff_id", got.DiffID).WithField("duration", duration).Info("lazily mounted layer proven")
		return p
	}
	metrics.LayerProofs.WithLabelValues("forged").Inc()
	metrics.ForgedLayers.Inc()
	computed := string(got.DiffID)
	if computed == "" {
		computed = labels.ForgedUndecompressable + ": " + got.DecompressError
	}
	// The incident.
	s.incidents.add(ctx, Incident{
		Time: time.Now().UTC(), Snapshot: name, ChainID: chainID.String(),
		ImageRef: layer.ImageRef, LayerDigest: layer.LayerDigest.String(),
		ClaimedDiffID: claimedDiffID(chainID, parentChain), ComputedDiffID: computed,
	})
	log.G(ctx).WithFields(log.Fields{
		"claimed_diff_id":  claimedDiffID(chainID, parentChain),
		"computed_diff_id": computed,
		"blob_size":        got.Size,
		"duration":         duration,
	}).Error("forged layer: its blob does not have the DiffID its image's config claims; quarantined, never handed to another image")
	s.sweepForged(ctx, true)
	return p
}

// storedForProof reads what a proof needs of snapshot name: its id, info,
// and the chain ID of its parent ("" for a base layer).
func (s *Snapshotter) storedForProof(ctx context.Context, name string) (id string, info snapshots.Info, parentChain digest.Digest, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		if id, info, _, err = storage.GetInfo(ctx, name); err != nil {
			return err
		}
		if info.Parent == "" {
			return nil
		}
		_, pinfo, _, err := storage.GetInfo(ctx, info.Parent)
		if err != nil {
			return fmt.Errorf("parent %s: %w", info.Parent, err)
		}
		parentChain, err = chainIDOf(pinfo)
		return err
	})
	if err != nil {
		return "", snapshots.Info{}, "", fmt.Errorf("failed to read snapshot %s to prove it: %w", name, err)
	}
	return id, info, parentChain, nil
}

// chainIDOf returns the chain ID a committed snapshot stands for: its ref
// label, or the one it claimed before it was found forged, or else the last
// element of its name (containerd commits an unpacked layer as
// "<namespace>/<n>/<chain ID>").
func chainIDOf(info snapshots.Info) (digest.Digest, error) {
	for _, v := range []string{info.Labels[labels.TargetSnapshotRef], info.Labels[labels.ClaimedRef], info.Name[strings.LastIndex(info.Name, "/")+1:]} {
		v, _, _ = strings.Cut(v, "@") // lazyfs's own second name for a chain ID
		if d, err := digest.Parse(v); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("snapshot %s: cannot tell its chain ID: %w", info.Name, errdefs.ErrFailedPrecondition)
}

// recordedProof returns the outcome kept in a snapshot's labels, if any.
func recordedProof(info snapshots.Info) (proof, bool) {
	if d := info.Labels[labels.Verified]; d != "" {
		return proof{diffID: digest.Digest(d)}, true
	}
	if d, ok := info.Labels[labels.Forged]; ok {
		if d == labels.ForgedUndecompressable {
			d = ""
		}
		return proof{forged: true, diffID: digest.Digest(d)}, true
	}
	return proof{}, false
}

// recordProof keeps the outcome in the snapshot's labels, so that a layer
// is proven once. A forged snapshot loses its ref label in the same
// transaction: from then on neither lazyfs's lookup nor containerd's (a
// Walk on that label) finds it at the chain ID, while the namespaces that
// use it already keep it by name.
func (s *Snapshotter) recordProof(ctx context.Context, name string, p proof) error {
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, name)
		if err != nil {
			return err
		}
		info.Labels = maps.Clone(info.Labels)
		if !p.forged {
			info.Labels[labels.Verified] = p.diffID.String()
		} else {
			info.Labels[labels.Forged] = p.diffID.String()
			if p.diffID == "" {
				info.Labels[labels.Forged] = labels.ForgedUndecompressable
			}
			info.Labels[labels.ClaimedRef] = info.Labels[labels.TargetSnapshotRef]
			delete(info.Labels, labels.TargetSnapshotRef)
		}
		_, err = storage.UpdateInfo(ctx, info, "labels")
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to record the proof of snapshot %s: %w", name, err)
	}
	return nil
}

// restoreVerdicts tells the workers that serve restored snapshots what their
// proofs found, once each is mounted again: a new worker knows nothing of
// a proof made before the restart, and would report the layer unverified.
func (s *Snapshotter) restoreVerdicts(ctx context.Context, verdicts map[string]proof) {
	if len(verdicts) == 0 {
		return
	}
	ctx = log.WithLogger(s.ctx, log.G(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for id, p := range verdicts {
			if err := s.remote.Wait(ctx, []string{id}); err != nil {
				continue // not served again: its restore failure is logged
			}
			if err := s.remote.SetVerdict(ctx, id, p.forged, p.diffID); err != nil {
				log.G(ctx).WithError(err).WithField("snapshot_id", id).Warn("failed to tell a worker the verdict on a restored layer")
			}
		}
	}()
}
