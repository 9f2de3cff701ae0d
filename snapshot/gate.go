package snapshot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/metrics"
)

// ImageIndex tells images apart where containerd's calls to a snapshotter
// do not: within one namespace containerd's unpacker skips a chain ID that
// exists, so a second image that reaches a lazily mounted layer never
// reaches Prepare with its own blob.
type ImageIndex interface {
	// OtherBlobs returns, for each layer asked about, the images of ctx's
	// namespace that reach its chain ID with another blob. One call
	// answers for every lower layer of a container: a container Prepare
	// waits on it.
	OtherBlobs(ctx context.Context, layers []ChainLayer) ([][]string, error)
}

// ChainLayer is a layer blob at a chain ID.
type ChainLayer struct {
	ChainID, Layer digest.Digest
}

// WithImageIndex lets "before-share" tell which unproven layers another
// image reaches. Without one every unproven layer counts as shared: the
// safe side.
func WithImageIndex(i ImageIndex) Opt {
	return func(o *options) { o.images = i }
}

// lazyLower is a lazily mounted snapshot below a Prepare's parent.
type lazyLower struct {
	name        string
	info        snapshots.Info
	parentChain digest.Digest
}

// gateContainer decides whether a container's snapshot may be prepared on
// parent (issue 14, point 3). A forged layer in the chain is refused,
// always. An unproven one is waited for when the verify mode says so:
// "before-use" every one, "before-share" the ones another image of the
// namespace reaches with another blob. The wait is bounded by proofWait;
// the proof goes on after it.
func (s *Snapshotter) gateContainer(ctx context.Context, parent string) error {
	if parent == "" || s.remote == nil {
		return nil
	}
	lowers, err := s.lazyLowers(ctx, parent)
	if err != nil {
		return err
	}
	var unproven []lazyLower
	for _, l := range lowers {
		if p, ok := recordedProof(l.info); ok {
			if p.forged {
				return forgedError(l, p)
			}
			continue
		}
		unproven = append(unproven, l)
	}
	wait := s.mustWait(ctx, unproven)
	if len(wait) == 0 {
		return nil
	}
	start := time.Now()
	timer := time.NewTimer(s.proofWait)
	defer timer.Stop()
	// Every proof starts now, ahead of the background queue; they run in
	// parallel, and the wait is for all of them.
	calls := make([]*proofCall, len(wait))
	for i, l := range wait {
		calls[i] = s.prove(ctx, l.name, l.info.Labels[labels.ImageRef])
	}
	for i, l := range wait {
		select {
		case <-calls[i].done:
		case <-timer.C:
			metrics.ProofWaits.WithLabelValues("timeout").Inc()
			return fmt.Errorf("layer %s of %s (chain ID %s) is still being proven after %v; a container may not use it before (layers.verify = %q; the proof goes on, retry): %w",
				l.info.Labels[labels.LayerDigest], l.info.Labels[labels.ImageRef], chainIDLabel(l.info), s.proofWait, s.verify, errdefs.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the proof of layer %s: %w", l.info.Labels[labels.LayerDigest], ctx.Err())
		}
		res := calls[i].res
		if res.err != nil {
			metrics.ProofWaits.WithLabelValues("error").Inc()
			return fmt.Errorf("layer %s of %s could not be proven, and a container may not use it before: %w",
				l.info.Labels[labels.LayerDigest], l.info.Labels[labels.ImageRef], res.err)
		}
		if res.forged {
			metrics.ProofWaits.WithLabelValues("forged").Inc()
			return forgedError(l, res)
		}
	}
	metrics.ProofWaits.WithLabelValues("verified").Inc()
	log.G(ctx).WithField("layers", len(wait)).WithField("duration", time.Since(start)).Info("container waited for the proof of its lazily mounted layers")
	return nil
}

// mustWait returns the unproven layers a container must wait for.
func (s *Snapshotter) mustWait(ctx context.Context, unproven []lazyLower) []lazyLower {
	if len(unproven) == 0 {
		return nil
	}
	switch s.verify {
	case VerifyBackground:
		return nil
	case VerifyBeforeUse:
		return unproven
	}
	if s.images == nil {
		return unproven // no way to tell images apart: the safe side
	}
	ask := make([]ChainLayer, len(unproven))
	for i, l := range unproven {
		ask[i] = ChainLayer{ChainID: digest.Digest(l.info.Labels[labels.TargetSnapshotRef]), Layer: digest.Digest(l.info.Labels[labels.LayerDigest])}
	}
	start := time.Now()
	others, err := s.images.OtherBlobs(ctx, ask)
	log.G(ctx).WithField("layers", len(ask)).WithField("duration", time.Since(start)).Debug("asked containerd which images reach the unproven lazily mounted layers")
	if err == nil && len(others) != len(ask) {
		err = fmt.Errorf("image index answered for %d layers of %d: %w", len(others), len(ask), errdefs.ErrInternal)
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot tell which images reach the lazily mounted layers; waiting for their proofs")
		return unproven
	}
	var wait []lazyLower
	for i, l := range unproven {
		if len(others[i]) == 0 {
			continue
		}
		log.G(ctx).WithFields(log.Fields{
			"chain_id":     ask[i].ChainID,
			"layer_digest": ask[i].Layer,
			"image_ref":    l.info.Labels[labels.ImageRef],
			"other_images": strings.Join(others[i], ","),
		}).Warn("other images reach an unproven lazily mounted layer with another blob: the container waits for its proof")
		wait = append(wait, l)
	}
	return wait
}

// lazyLowers returns the lazily mounted snapshots in the chain from parent
// down to the base layer, each with its parent's chain ID.
func (s *Snapshotter) lazyLowers(ctx context.Context, parent string) ([]lazyLower, error) {
	var out []lazyLower
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		var chain []snapshots.Info
		for name := parent; name != ""; {
			_, info, _, err := storage.GetInfo(ctx, name)
			if err != nil {
				return fmt.Errorf("parent %s: %w", name, err)
			}
			chain = append(chain, info)
			name = info.Parent
		}
		for i, info := range chain {
			if !isRemote(info) {
				continue
			}
			l := lazyLower{name: info.Name, info: info}
			if i+1 < len(chain) {
				pc, err := chainIDOf(chain[i+1])
				if err != nil {
					return err
				}
				l.parentChain = pc
			}
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read the layers below %s: %w", parent, err)
	}
	return out, nil
}

// forgedError is what a container's Prepare on a forged layer gets: it
// names the image that brought the layer, its manifest layer digest, the
// DiffID its config claimed and the one its blob has.
func forgedError(l lazyLower, p proof) error {
	computed := p.diffID.String()
	if p.diffID == "" {
		computed = labels.ForgedUndecompressable
	}
	return fmt.Errorf("layer %s of image %s is forged: its config claims DiffID %s, its blob has %s; it is quarantined and its snapshot is removed once unused, pull the image again: %w",
		l.info.Labels[labels.LayerDigest], l.info.Labels[labels.ImageRef], claimedDiffID(chainIDLabel(l.info), l.parentChain), computed, errdefs.ErrFailedPrecondition)
}

// chainIDLabel is the chain ID a remote snapshot stands or stood for.
func chainIDLabel(info snapshots.Info) digest.Digest {
	if c := info.Labels[labels.TargetSnapshotRef]; c != "" {
		return digest.Digest(c)
	}
	return digest.Digest(info.Labels[labels.ClaimedRef])
}

// claimedDiffID names the DiffID an image claimed for a layer at chainID.
// It is stored nowhere: a chain ID is a hash of it, so what the image
// claimed is the chain ID itself for a base layer, and else is named by the
// chain ID and its parent.
func claimedDiffID(chainID, parentChain digest.Digest) string {
	if parentChain == "" {
		return chainID.String()
	}
	return "the DiffID of chain ID " + chainID.String() + " on parent " + parentChain.String()
}
