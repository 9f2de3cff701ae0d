package snapshot

import (
	"context"
	"errors"
	"sync"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/labels"
)

// Fallback reasons of a layer Prepare cannot mount lazily for want of
// labels (lazyfs_fallbacks_total{reason}).
const (
	// reasonNotEstargz: the layer carries no eStargz TOC digest, the common
	// case of an ordinary image.
	reasonNotEstargz = "not_estargz"
	// reasonMissingLabels: the layer is eStargz (its TOC digest reached
	// Prepare) but containerd did not send the labels that name its image
	// and blob: a containerd configuration problem.
	reasonMissingLabels = "missing_labels"
	// reasonMalformedLabels: a label is there but malformed.
	reasonMalformedLabels = "not_lazy"
)

// containerdKeysForLabels names what makes containerd send the labels, per
// line and client; the warning carries it so that an operator needs no
// other document.
var containerdKeysForLabels = []string{
	`2.x: [proxy_plugins.lazyfs.exports] enable_remote_snapshot_annotations = "true" and a lazyfs entry in [[plugins."io.containerd.transfer.v1.local".unpack_config]]`,
	`1.6/1.7 CRI: [plugins."io.containerd.grpc.v1.cri".containerd] disable_snapshot_annotations = false`,
	`1.6/1.7 ctr sends none: pull with snapshotterctl image pull`,
}

// labelHint warns once per process about eStargz layers that arrive
// without the labels they need: one line at warning level is enough to
// find the cause, and a pull of many layers must not flood the log.
type labelHint struct{ once sync.Once }

// missingLabels returns the labels the lazy path needs that l lacks, when
// l describes an eStargz layer (a TOC digest is there); nil otherwise.
func missingLabels(l map[string]string) []string {
	if l[labels.TOCDigest] == "" {
		return nil
	}
	var missing []string
	for _, k := range []string{labels.ImageRef, labels.LayerDigest} {
		if l[k] == "" {
			missing = append(missing, k)
		}
	}
	return missing
}

// notLazyReason returns the fallback reason of a layer whose labels
// labels.ParseLayer refused with err, and warns the first time an eStargz
// layer lacks its labels.
func (s *Snapshotter) notLazyReason(ctx context.Context, l map[string]string, err error) string {
	if !errors.Is(err, labels.ErrNotRemote) {
		return reasonMalformedLabels
	}
	missing := missingLabels(l)
	if len(missing) == 0 {
		return reasonNotEstargz
	}
	s.labelHint.once.Do(func() {
		log.G(ctx).WithField("missing_labels", missing).WithField("containerd_keys", containerdKeysForLabels).
			Warn("eStargz layer without the labels lazyfs needs: containerd is not configured to send them, so every such layer is downloaded in full (snapshotterctl doctor names the key; this is logged once)")
	})
	return reasonMissingLabels
}
