package ctl

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/mgmtapi"
)

// defaultOptimizeRun is how long the recorded run may take when --run-for
// is not given: long enough for an application's start.
const defaultOptimizeRun = time.Minute

func imageOptimizeCommand() *command {
	return &command{
		name:    "optimize",
		args:    "SRC DST [-- CMD [ARG...]]",
		summary: "record what an image reads when it starts and convert it with those files first",
		help: `Pulls SRC (an eStargz image in a registry, e.g. one that image convert --push
made) lazily with lazyfs, runs it once (CMD, else the image's own command) until
it exits or --run-for ends, and reads from the workers which files the run
opened, in the order of their first open. Then fetches SRC's layers and converts
it again as DST with those files as the prioritized files: each layer starts
with the files the run opened, in that order, followed by the prefetch landmark,
so that a lazy pull of DST prefetches them first. With --push, DST is pushed.

The run is recorded by the FUSE server of each layer's worker (every open of a
file reaches it); a layer that is not mounted lazily (not eStargz, or mounted
before this command without a record) is reported and gets no prioritized files
from the run.`,
		setup: func(fs *flag.FlagSet) action {
			var (
				chunk config.ByteSize
				reg   registryFlags
			)
			runFor := fs.Duration("run-for", defaultOptimizeRun, "how long the run may take; it is stopped then and what it opened so far is used")
			fs.TextVar(&chunk, "chunk-size", config.ByteSize(0), "largest chunk of a file (`size`) in DST; 0: estargz's default (4MiB)")
			level := fs.Int("level", 0, "gzip `level` of DST's layers, from -2 to 9; 0 means 9")
			push := fs.Bool("push", false, "push DST to its registry after converting")
			reg.register(fs)
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) < 2 {
					return usagef("expected SRC and DST, then optionally -- CMD, got %d arguments", len(args))
				}
				if *runFor <= 0 {
					return usagef("--run-for must be positive")
				}
				if *push {
					// Checked before the run and the conversion, not after.
					if _, err := reference.ParseDockerRef(args[1]); err != nil {
						return fmt.Errorf("cannot push %q: %v: %w", args[1], err, errdefs.ErrInvalidArgument)
					}
				}
				ropts, err := reg.resolve(&a.g)
				if err != nil {
					return err
				}
				o := optimizer{a: a, src: args[0], dst: args[1], cmd: args[2:], runFor: *runFor, ropts: ropts}
				files, err := o.record(ctx)
				if err != nil {
					return err
				}
				req := convertRequest{src: o.src, dst: o.dst, chunkSize: int(chunk), level: *level, prioritize: files, rebuild: true}
				if *push {
					req.push = &ropts
				}
				return convertImage(ctx, a, req)
			}
		},
	}
}

// optimizer records the files a run of an image opens.
type optimizer struct {
	a        *app
	src, dst string
	cmd      []string
	runFor   time.Duration
	ropts    resolverOptions
}

// record pulls src lazily, runs it once, and returns the files it opened,
// layer by layer from the top, each layer's in the order of its first
// opens; then it fetches src's layers for the conversion.
func (o *optimizer) record(ctx context.Context) ([]string, error) {
	named, err := reference.ParseDockerRef(o.src)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %v: %w", o.src, err, errdefs.ErrInvalidArgument)
	}
	o.src = named.String()
	if err := pullImage(ctx, o.a, o.src, o.ropts); err != nil {
		return nil, err
	}
	ctx, c, err := o.a.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	mgmt, err := o.a.mgmt()
	if err != nil {
		return nil, err
	}
	out := &lineWriter{w: o.a.stdout}

	img, err := c.GetImage(ctx, o.src)
	if err != nil {
		return nil, err
	}
	layers, err := imageLayers(ctx, img)
	if err != nil {
		return nil, err
	}
	mounts, err := layerMounts(ctx, mgmt, layers)
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		id, ok := mounts[l.Digest.String()]
		if !ok {
			out.printf("layer %s is not mounted lazily: its files get no priority from the run", shortDigest(l.Digest))
			continue
		}
		if err := mgmt.ResetAccesses(ctx, id); err != nil {
			return nil, err
		}
	}

	out.printf("running %s for at most %s", o.src, o.runFor)
	if err := o.run(ctx, c, img, out); err != nil {
		return nil, err
	}

	var files []string
	// From the top layer down: the order does not matter across layers
	// (each layer orders its own files), a path in several layers is
	// prioritized in each.
	for i := len(layers) - 1; i >= 0; i-- {
		id, ok := mounts[layers[i].Digest.String()]
		if !ok {
			continue
		}
		acc, err := mgmt.Accesses(ctx, id)
		if err != nil {
			return nil, err
		}
		note := ""
		if acc.Truncated {
			note = " (the record's bound: later files left out)"
		}
		out.printf("layer %s: the run opened %d files%s", shortDigest(layers[i].Digest), len(acc.Files), note)
		files = append(files, acc.Files...)
	}

	// The lazy pull left the layers in the registry; the conversion reads
	// them whole.
	out.printf("fetching the layers of %s", o.src)
	if _, err := c.Fetch(ctx, o.src,
		client.WithResolver(newResolver(ctx, o.ropts)),
		client.WithPlatformMatcher(platforms.Default())); err != nil {
		return nil, fmt.Errorf("failed to fetch %s for its conversion: %w", o.src, err)
	}
	return files, nil
}

// imageLayers returns the layers of img for this platform, bottom first.
func imageLayers(ctx context.Context, img client.Image) ([]ocispec.Descriptor, error) {
	m, err := images.Manifest(ctx, img.ContentStore(), img.Target(), platforms.Default())
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", img.Name(), err)
	}
	return m.Layers, nil
}

// layerMounts maps the digests of layers to the lazy mounts that serve them.
func layerMounts(ctx context.Context, mgmt *mgmtapi.Client, layers []ocispec.Descriptor) (map[string]string, error) {
	ms, err := mgmt.Mounts(ctx)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, l := range layers {
		want[l.Digest.String()] = true
	}
	out := map[string]string{}
	for _, m := range ms {
		if want[m.LayerDigest] && m.State == "serving" {
			out[m.LayerDigest] = m.ID
		}
	}
	return out, nil
}

// run runs img once in a container on lazyfs, with o.cmd or the image's
// command, until it exits or o.runFor ends (then it is killed: a server
// never exits, and what it opened while starting is what counts).
func (o *optimizer) run(ctx context.Context, c *client.Client, img client.Image, out *lineWriter) (err error) {
	id := "lazyfs-optimize-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(o.cmd) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(o.cmd...))
	}
	ctr, err := c.NewContainer(ctx, id,
		client.WithSnapshotter(o.a.g.snapshotter),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(specOpts...))
	if err != nil {
		return fmt.Errorf("failed to create the container of the run: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), connectTimeout)
		defer cancel()
		if derr := ctr.Delete(dctx, client.WithSnapshotCleanup); derr != nil {
			log.G(ctx).WithError(derr).WithField("container", id).Warn("failed to remove the container of the run")
		}
	}()
	// The run's output goes to stderr: it is the application's, not ours.
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, o.a.stderr, o.a.stderr)))
	if err != nil {
		return fmt.Errorf("failed to create the task of the run: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), connectTimeout)
		defer cancel()
		if _, derr := task.Delete(dctx, client.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
			log.G(ctx).WithError(derr).WithField("container", id).Warn("failed to remove the task of the run")
		}
	}()
	exited, err := task.Wait(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("failed to start the run: %w", err)
	}
	timer := time.NewTimer(o.runFor)
	defer timer.Stop()
	select {
	case st := <-exited:
		code, _, serr := st.Result()
		if serr != nil {
			return serr
		}
		out.printf("the run exited with status %d after %s", code, time.Since(start).Round(time.Millisecond))
	case <-timer.C:
		out.printf("the run still ran after %s: stopping it", o.runFor)
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("failed to stop the run: %w", err)
		}
		<-exited
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
