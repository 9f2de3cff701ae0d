package ctl

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// pullPollInterval is how often the snapshots of the layers being pulled
// are looked at to report which ones are done.
const pullPollInterval = 200 * time.Millisecond

// pullImage pulls ref through containerd, unpacking it with the lazyfs
// snapshotter, and reports each layer's outcome as it happens and a summary
// at the end.
func pullImage(ctx context.Context, a *app, ref string, ropts resolverOptions) error {
	start := time.Now()
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return fmt.Errorf("invalid image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	ref = named.String()

	ctx, c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	out := &lineWriter{w: a.stdout}
	out.printf("pulling %s with snapshotter %s", ref, a.g.snapshotter)
	sn := c.SnapshotService(a.g.snapshotter)
	progress := newPullProgress(out, sn, c.ContentStore())

	pollCtx, stopPolling := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		progress.poll(pollCtx, pullPollInterval)
	}()
	img, err := c.Pull(ctx, ref,
		client.WithResolver(newResolver(ctx, ropts)),
		client.WithPullUnpack,
		client.WithPullSnapshotter(a.g.snapshotter),
		// The info handler puts the image ref and the layer and manifest
		// digests on each layer descriptor; the unpacker passes them to
		// Prepare as labels, which is what lets the snapshotter find the
		// layer in the registry. containerd 1.6's ctr never adds them.
		client.WithImageHandlerWrapper(func(h images.Handler) images.Handler {
			return progress.wrap(snapshotters.AppendInfoHandlerWrapper(ref)(h))
		}),
	)
	stopPolling()
	<-polled
	if err != nil {
		return fmt.Errorf("failed to pull %s with snapshotter %s: %w", ref, a.g.snapshotter, err)
	}

	sum, err := progress.finish(ctx, img)
	if err != nil {
		return fmt.Errorf("pulled %s, but failed to look at its snapshots: %w", ref, err)
	}
	line := fmt.Sprintf("image %s: %d layers: %d lazily mounted, %d unpacked", img.Name(), sum.layers, sum.lazy, sum.unpacked)
	if sum.missing > 0 {
		line += fmt.Sprintf(", %d without a snapshot", sum.missing)
	}
	out.printf("%s", line)
	out.printf("done in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// lineWriter writes whole lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}
