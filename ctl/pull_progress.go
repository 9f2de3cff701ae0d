package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/labels"
)

// layerPhase is where a layer is in a pull. Phases only move forward; the
// last two are outcomes.
type layerPhase int

const (
	phaseWaiting   layerPhase = iota
	phaseFetching             // its blob is being downloaded
	phaseUnpacking            // downloaded, to be unpacked
	phaseUnpacked             // committed as an ordinary snapshot
	phaseLazy                 // committed as a remote snapshot (a FUSE mount)
)

func (p layerPhase) done() bool { return p >= phaseUnpacked }

// snapshotStatter is what the progress needs of the snapshotter.
type snapshotStatter interface {
	Stat(ctx context.Context, key string) (snapshots.Info, error)
}

// pullProgress reports what happens to each layer of a pull. It learns
// the layers from the manifest and config as the pull's handlers see them,
// the downloads from the layer handlers (a lazily mounted layer is never
// downloaded), and the outcomes from the committed snapshots, which it polls:
// the unpacker tells nobody when it commits one.
type pullProgress struct {
	out *lineWriter
	sn  snapshotStatter
	cs  content.Provider

	mu        sync.Mutex
	manifests map[digest.Digest][]ocispec.Descriptor // config digest → the manifest's layers
	layers    []*layerProgress                       // in the order of the image, once known
	byDigest  map[digest.Digest][]*layerProgress
}

type layerProgress struct {
	desc    ocispec.Descriptor
	chainID digest.Digest
	phase   layerPhase
}

// pullSummary counts the outcomes of an image's layers.
type pullSummary struct {
	layers, lazy, unpacked, missing int
}

func newPullProgress(out *lineWriter, sn snapshotStatter, cs content.Provider) *pullProgress {
	return &pullProgress{
		out:       out,
		sn:        sn,
		cs:        cs,
		manifests: map[digest.Digest][]ocispec.Descriptor{},
		byDigest:  map[digest.Digest][]*layerProgress{},
	}
}

// wrap returns h reporting what it does. It never changes what h returns:
// progress must not be able to fail a pull.
func (p *pullProgress) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		isLayer := images.IsLayerType(desc.MediaType)
		if isLayer {
			p.advance(desc.Digest, phaseFetching)
		}
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		switch {
		case images.IsManifestType(desc.MediaType):
			p.addManifest(children)
		case images.IsConfigType(desc.MediaType):
			p.addConfig(ctx, desc)
		case isLayer:
			p.advance(desc.Digest, phaseUnpacking)
		}
		return children, nil
	})
}

func (p *pullProgress) addManifest(children []ocispec.Descriptor) {
	var config digest.Digest
	var layers []ocispec.Descriptor
	for _, c := range children {
		switch {
		case images.IsLayerType(c.MediaType):
			layers = append(layers, c)
		case images.IsConfigType(c.MediaType):
			config = c.Digest
		}
	}
	if config == "" || len(layers) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.manifests[config]; !ok {
		p.manifests[config] = layers
	}
}

// addConfig computes the chain ID of every layer from the config's diff IDs
// and reports the layers whose snapshot already exists. The unpacker handles
// a config only after this handler returned, so none is committed yet by
// this pull.
func (p *pullProgress) addConfig(ctx context.Context, desc ocispec.Descriptor) {
	p.mu.Lock()
	layers, ok := p.manifests[desc.Digest]
	known := len(p.layers) > 0
	p.mu.Unlock()
	if !ok || known {
		return
	}
	blob, err := content.ReadBlob(ctx, p.cs, desc)
	if err != nil {
		return
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil || len(cfg.RootFS.DiffIDs) != len(layers) {
		return
	}
	chainIDs := identity.ChainIDs(slices.Clone(cfg.RootFS.DiffIDs))
	list := make([]*layerProgress, len(layers))
	for i, l := range layers {
		list[i] = &layerProgress{desc: l, chainID: chainIDs[i]}
	}
	p.mu.Lock()
	if len(p.layers) > 0 {
		p.mu.Unlock()
		return
	}
	p.layers = list
	for _, l := range list {
		p.byDigest[l.desc.Digest] = append(p.byDigest[l.desc.Digest], l)
	}
	p.mu.Unlock()

	p.out.printf("%d layers", len(list))
	for _, l := range list {
		if phase, note, err := p.stat(ctx, l.chainID); err == nil && phase.done() {
			p.settle(l, phase, note+" (already present)")
		}
	}
}

// advance moves the layers with digest d to phase and reports it.
func (p *pullProgress) advance(d digest.Digest, phase layerPhase) {
	p.mu.Lock()
	var moved []*layerProgress
	for _, l := range p.byDigest[d] {
		if l.phase < phase {
			l.phase = phase
			moved = append(moved, l)
		}
	}
	p.mu.Unlock()
	for _, l := range moved {
		p.report(l.desc, phase, "")
	}
}

// settle records a layer's outcome and reports it unless it was reported
// already.
func (p *pullProgress) settle(l *layerProgress, phase layerPhase, note string) {
	p.mu.Lock()
	moved := !l.phase.done()
	if moved {
		l.phase = phase
	}
	p.mu.Unlock()
	if moved {
		p.report(l.desc, phase, note)
	}
}

func (p *pullProgress) report(desc ocispec.Descriptor, phase layerPhase, note string) {
	var what string
	switch phase {
	case phaseFetching:
		what = "fetching (" + formatSize(desc.Size) + ")"
	case phaseUnpacking:
		what = "fetched"
	case phaseUnpacked:
		what = "unpacked"
	case phaseLazy:
		what = "lazily mounted"
	default:
		return
	}
	p.out.printf("layer %s %s%s", shortDigest(desc.Digest), what, note)
}

// poll reports the layers whose snapshot got committed, until ctx ends.
func (p *pullProgress) poll(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		var pending []*layerProgress
		for _, l := range p.layers {
			if !l.phase.done() {
				pending = append(pending, l)
			}
		}
		p.mu.Unlock()
		for _, l := range pending {
			if phase, note, err := p.stat(ctx, l.chainID); err == nil && phase.done() {
				p.settle(l, phase, note)
			}
		}
	}
}

// stat returns the outcome of the layer committed as chainID:
// phaseLazy for a remote snapshot, phaseUnpacked for an ordinary one, and
// phaseWaiting (with ErrNotFound) if there is no snapshot yet.
// For a lazily mounted layer the note says whether its blob is proven to
// have the DiffID its chain ID implies (issue 14): a proof runs in the
// background after the mount, so a fresh pull usually says "unverified".
func (p *pullProgress) stat(ctx context.Context, chainID digest.Digest) (layerPhase, string, error) {
	info, err := p.sn.Stat(ctx, chainID.String())
	if err != nil {
		return phaseWaiting, "", err
	}
	if info.Labels[labels.Remote] != "" {
		return phaseLazy, identityNote(info.Labels), nil
	}
	return phaseUnpacked, "", nil
}

// identityNote is a lazily mounted layer's proof state, as pull prints it.
func identityNote(l map[string]string) string {
	switch {
	case l[labels.Forged] != "":
		return ", forged: its blob has DiffID " + l[labels.Forged] + " (quarantined)"
	case l[labels.Verified] != "":
		return ", verified"
	}
	return ", unverified (proof in the background)"
}

// finish looks at the snapshot of every layer of the pulled image, reports
// the outcomes not reported yet and counts them.
func (p *pullProgress) finish(ctx context.Context, img client.Image) (pullSummary, error) {
	manifest, err := images.Manifest(ctx, p.cs, img.Target(), img.Platform())
	if err != nil {
		return pullSummary{}, fmt.Errorf("failed to read manifest: %w", err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return pullSummary{}, fmt.Errorf("failed to read rootfs: %w", err)
	}
	if len(diffIDs) != len(manifest.Layers) {
		return pullSummary{}, fmt.Errorf("manifest has %d layers, config %d diff ids: %w", len(manifest.Layers), len(diffIDs), errdefs.ErrFailedPrecondition)
	}
	return p.settleAll(ctx, manifest.Layers, identity.ChainIDs(slices.Clone(diffIDs)))
}

// settleAll reports and counts the outcome of each layer from its snapshot.
func (p *pullProgress) settleAll(ctx context.Context, layers []ocispec.Descriptor, chainIDs []digest.Digest) (pullSummary, error) {
	p.mu.Lock()
	known := map[digest.Digest]*layerProgress{}
	for _, l := range p.layers {
		known[l.chainID] = l
	}
	p.mu.Unlock()

	sum := pullSummary{layers: len(layers)}
	for i, desc := range layers {
		phase, note, err := p.stat(ctx, chainIDs[i])
		if errdefs.IsNotFound(err) {
			// Unpacking was skipped (e.g. the platform does not match).
			sum.missing++
			p.out.printf("layer %s has no snapshot (chain id %s)", shortDigest(desc.Digest), chainIDs[i])
			continue
		}
		if err != nil {
			return sum, fmt.Errorf("layer %s: failed to stat snapshot %s: %w", desc.Digest, chainIDs[i], err)
		}
		if phase == phaseLazy {
			sum.lazy++
		} else {
			sum.unpacked++
		}
		l := known[chainIDs[i]]
		if l == nil {
			l = &layerProgress{desc: desc, chainID: chainIDs[i]}
		}
		p.settle(l, phase, note)
	}
	return sum, nil
}
