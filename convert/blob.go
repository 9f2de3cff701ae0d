package convert

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	digest "github.com/opencontainers/go-digest"
)

// writeBlob streams r into the content store under the ingest ref and
// commits it. labels is called once r has been read to its end, because the
// labels of a built layer (its diffID) are only known then. It returns the
// digest and size of the blob.
func writeBlob(ctx context.Context, cs content.Ingester, ref string, r io.Reader, labels func() map[string]string) (digest.Digest, int64, error) {
	w, err := content.OpenWriter(ctx, cs, content.WithRef(ref))
	if err != nil {
		return "", 0, fmt.Errorf("failed to open content writer %s: %w", ref, err)
	}
	// Closing releases the ingest: after a commit, or a failure that is
	// returned anyway, an error closing it loses nothing and changes
	// nothing for the caller.
	defer w.Close()

	// An ingest left by an interrupted conversion resumes under the same
	// ref; a new build need not produce the same bytes, so start afresh
	// (truncating a new, empty ingest changes nothing).
	if err := w.Truncate(0); err != nil {
		return "", 0, fmt.Errorf("failed to truncate content writer %s: %w", ref, err)
	}

	n, err := io.Copy(w, r)
	if err != nil {
		return "", 0, fmt.Errorf("failed to write blob %s: %w", ref, err)
	}
	lbls := labels()
	dgst := w.Digest()
	err = w.Commit(ctx, n, dgst, content.WithLabels(lbls))
	switch {
	case err == nil:
	case errdefs.IsAlreadyExists(err):
		// The same bytes were built before (a build is deterministic for a
		// given input, options and GOMAXPROCS); the labels still have to be
		// there.
		setLabels(ctx, cs, dgst, lbls)
	default:
		return "", 0, fmt.Errorf("failed to commit blob %s: %w", dgst, err)
	}
	return dgst, n, nil
}

// setLabels adds labels to an existing blob if the store can hold labels.
// They only spare containerd work (images.GetDiffID recomputes a missing
// containerd.io/uncompressed label), so a failure is logged, not returned.
func setLabels(ctx context.Context, cs content.Ingester, dgst digest.Digest, labels map[string]string) {
	if len(labels) == 0 {
		return
	}
	u, ok := cs.(content.Manager)
	if !ok {
		return
	}
	info := content.Info{Digest: dgst, Labels: labels}
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	if _, err := u.Update(ctx, info, paths...); err != nil {
		log.G(ctx).WithError(err).WithField("digest", dgst).Warn("failed to label existing blob")
	}
}
