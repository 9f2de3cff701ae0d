// Package labels names every snapshot label lazyfs reads or writes and parses
// the ones that describe a lazily loadable layer. It is the one place where a
// label is parsed.
package labels

import (
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
)

const (
	// TargetSnapshotRef is the chain ID containerd will look the layer's
	// committed snapshot up by after Prepare returns ErrAlreadyExists.
	TargetSnapshotRef = "containerd.io/snapshot.ref"

	// ImageRef, ManifestDigest and LayerDigest are added to the layer
	// descriptors by containerd (enable_remote_snapshot_annotations, the
	// transfer service, CRI, or snapshotters.AppendInfoHandlerWrapper) and
	// reach Prepare as labels.
	ImageRef       = snapshotters.TargetRefLabel
	ManifestDigest = snapshotters.TargetManifestDigestLabel
	LayerDigest    = snapshotters.TargetLayerDigestLabel
	// ImageLayers lists the digests of the layer and the image's layers
	// after it, comma-separated (cut short to fit a label's size).
	ImageLayers = snapshotters.TargetImageLayersLabel

	// TOCDigest is the eStargz layer annotation with the digest of the
	// layer's table of contents; without it no TOC can be trusted and the
	// layer is unpacked as usual.
	TOCDigest = "containerd.io/snapshot/stargz/toc.digest"

	// Remote marks a committed snapshot whose contents are a FUSE mount
	// served by a worker. Its value is always "lazyfs": which worker
	// serves the mount is in workers.db (snapshotterctl daemons list),
	// since it changes when a worker is replaced.
	Remote = "containerd.io/snapshot/remote"

	// Verified marks a remote snapshot whose whole blob was proven to have
	// the DiffID its chain ID implies; its value is that DiffID. A proof is
	// made once: a snapshot carrying it is never fetched in full again.
	Verified = "containerd.io/snapshot/lazyfs.verified"
	// Forged marks a remote snapshot whose blob does not have the DiffID
	// its chain ID implies; its value is the DiffID the blob really has
	// (ForgedUndecompressable when it does not decompress). A forged
	// snapshot loses TargetSnapshotRef, so that neither lazyfs nor
	// containerd ever hands it to another image, and keeps the chain ID it
	// claimed in ClaimedRef for the record.
	Forged     = "containerd.io/snapshot/lazyfs.forged"
	ClaimedRef = "containerd.io/snapshot/lazyfs.claimed-ref"
)

// ForgedUndecompressable is the value of Forged for a blob that is not a
// gzip stream at all, hence has no DiffID.
const ForgedUndecompressable = "undecompressable"

// ErrNotRemote is returned by ParseLayer when the labels do not describe a
// lazily loadable layer (e.g. an image that is not eStargz).
var ErrNotRemote = fmt.Errorf("not a lazily loadable layer: %w", errdefs.ErrNotImplemented)

// ParseLayer reads a lazily loadable layer from Prepare's labels, or from a
// remote snapshot's. It returns an error wrapping ErrNotRemote when a label
// the lazy path needs is missing (the reason names it), and
// ErrInvalidArgument when one is malformed. The chain ID is not part of the
// layer: a forged snapshot keeps serving its own image without it.
//
// This is the one place a layer's labels are parsed: the snapshotter passes
// the value it returns on, and the supervisor and the worker never see the
// labels.
func ParseLayer(l map[string]string) (layer.Layer, error) {
	for _, key := range []string{ImageRef, LayerDigest, TOCDigest} {
		if l[key] == "" {
			return layer.Layer{}, fmt.Errorf("label %s missing: %w", key, ErrNotRemote)
		}
	}
	lay := layer.Layer{
		ImageRef:       l[ImageRef],
		ManifestDigest: digest.Digest(l[ManifestDigest]),
		LayerDigest:    digest.Digest(l[LayerDigest]),
		TOCDigest:      digest.Digest(l[TOCDigest]),
		NextLayers:     nextLayers(l[ImageLayers], digest.Digest(l[LayerDigest])),
	}
	if err := lay.Validate(); err != nil {
		return layer.Layer{}, fmt.Errorf("labels of layer %s: %w", l[LayerDigest], err)
	}
	return lay, nil
}

// nextLayers parses the ImageLayers label into the layers after self: a
// hint only, so a malformed label is not an error; the digests before the
// first malformed one (or the first MaxNextLayers) are kept.
func nextLayers(v string, self digest.Digest) []digest.Digest {
	var next []digest.Digest
	for s := range strings.SplitSeq(v, ",") {
		if s == "" || len(next) == layer.MaxNextLayers {
			break
		}
		d, err := digest.Parse(s)
		if err != nil {
			break
		}
		if d != self {
			next = append(next, d)
		}
	}
	return next
}
