// Command demo is `make demo`: it starts a private registry, containerd 2.3.7
// and lazyfs-snapshotter under a temp dir, pushes an eStargz image, pulls it
// lazily through lazyfs, runs a container from it, and prints what the
// registry served before and after the container started. It stops
// everything it started, whatever happens.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/tests/harness"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context) (err error) {
	env, err := harness.LoadEnv()
	if err != nil {
		return err
	}
	if err := env.CheckProgram("lazyfs-snapshotter", "lazyfsd"); err != nil {
		return err
	}
	busybox, err := env.Busybox()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "lazyfs-demo-")
	if err != nil {
		return err
	}
	var stop harness.Closers
	stop.Add(func() error { return os.RemoveAll(work) })
	defer stop.Close()
	var logs []string
	defer func() {
		if err != nil {
			harness.PrintLogs(os.Stderr, logs)
		}
	}()

	step("starting a registry on 127.0.0.1")
	reg, err := harness.StartRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	stop.Add(reg.Close)
	logs = append(logs, reg.Logs()...)
	// Pulls go through a counting proxy, so the demo can show what the
	// registry actually served.
	proxy, err := harness.StartProxy(reg.Addr())
	if err != nil {
		return err
	}
	stop.Add(proxy.Close)

	step("starting lazyfs-snapshotter")
	sn, err := harness.StartSnapshotter(ctx, harness.SnapshotterOptions{Env: env})
	if err != nil {
		return err
	}
	stop.Add(sn.Close)
	logs = append(logs, sn.Logs()...)

	step("starting containerd 2.3.7 with lazyfs as a proxy plugin")
	ctrd, err := harness.StartContainerd(ctx, harness.ContainerdOptions{
		Env: env, Version: harness.V2, LazyfsAddress: sn.Address(), LazyfsRoot: sn.Root(),
	})
	if err != nil {
		return err
	}
	stop.Add(ctrd.Close)
	logs = append(logs, ctrd.Logs()...)
	// The snapshotter asks this containerd which images share a layer
	// before a container may use one not proven yet ([layers] verify).
	if err := sn.UseContainerd(ctrd.Address()); err != nil {
		return err
	}

	step("building a test image (busybox + generated files, 3 layers) and converting it to eStargz")
	layout := filepath.Join(work, "layout")
	if _, err := harness.WriteOCILayout(layout, "v1", harness.TestImageLayers(busybox)); err != nil {
		return err
	}
	origRef := reg.Addr() + "/demo/app:orig"
	lazyRef := reg.Addr() + "/demo/app:estargz"
	if err := harness.Push(ctx, layout, "v1", origRef); err != nil {
		return err
	}
	if _, err := ctrd.Ctr(ctx, "image", "pull", "--plain-http", origRef); err != nil {
		return err
	}
	cl, err := ctrd.Client(ctx)
	if err != nil {
		return err
	}
	lazyImg, err := convert.Image(ctx, cl, origRef, lazyRef, convert.Options{})
	if err != nil {
		return err
	}
	// What a full pull of the image pulled lazily would download: its
	// manifest, config and (eStargz) layers, not the original image's too.
	imageSize, err := imageBytes(ctx, cl.ContentStore(), lazyImg.Target)
	if err != nil {
		return err
	}
	if _, err := ctrd.Ctr(ctx, "image", "push", "--plain-http", lazyRef); err != nil {
		return err
	}
	// Forget both images so that the lazy pull starts from nothing.
	if _, err := ctrd.Ctr(ctx, "image", "rm", "--sync", origRef, lazyRef); err != nil {
		return err
	}

	pullRef := proxy.Addr() + "/demo/app:estargz"
	step("pulling %s lazily", pullRef)
	proxy.Reset()
	start := time.Now()
	if _, err := ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", "lazyfs", pullRef); err != nil {
		return err
	}
	pullTime := time.Since(start)
	pulled := proxy.TotalBlobBytes()

	step("running a container that checks the checksums of every generated file")
	start = time.Now()
	// One line for all files; a file that fails is listed after it.
	script := fmt.Sprintf(`sha256sum -c %[1]s >/tmp/sums 2>&1; rc=$?
echo "$(grep -c ': OK$' /tmp/sums) of $(wc -l < %[1]s) generated files verified"
grep -v ': OK$' /tmp/sums; exit $rc`, harness.TestImageChecksumsPath)
	out, err := ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm", pullRef, "lazyfs-demo", "sh", "-c", script)
	if err != nil {
		return err
	}
	runTime := time.Since(start)
	fmt.Print(indent(out))
	var ok, of int
	if _, err := fmt.Sscanf(out, "%d of %d generated files verified", &ok, &of); err != nil || ok != of || ok == 0 {
		return fmt.Errorf("container did not verify every generated file: %q", out)
	}
	snaps, err := ctrd.Ctr(ctx, "snapshots", "--snapshotter", "lazyfs", "ls")
	if err != nil {
		return err
	}

	fmt.Printf("\nlazyfs snapshots:\n%s\n", indent(snaps))
	fmt.Printf("size of the pulled eStargz image (manifest, config, layers): %s\n", mib(imageSize))
	// Once a layer is mounted its worker also prefetches the image's
	// prioritized files and proves the layer in the background (the proof
	// streams the whole blob once and fills the chunk cache), so bytes go
	// on flowing while the pull and the container run.
	fmt.Printf("lazy pull took %s; served by the registry meanwhile (TOCs, prefetch, background proofs): %s\n", pullTime.Round(time.Millisecond), mib(pulled))
	fmt.Printf("container ran in %s; served by the registry meanwhile: %s\n", runTime.Round(time.Millisecond), mib(proxy.TotalBlobBytes()-pulled))
	step("demo succeeded; stopping everything it started")
	return nil
}

// imageBytes is the size of everything a full pull of the image at target
// downloads for this platform: its manifest, config and layers.
func imageBytes(ctx context.Context, cs content.Store, target ocispec.Descriptor) (int64, error) {
	m, err := images.Manifest(ctx, cs, target, platforms.Default())
	if err != nil {
		return 0, fmt.Errorf("manifest of the converted image: %w", err)
	}
	total := target.Size + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}
