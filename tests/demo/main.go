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
	if _, err := convert.Image(ctx, cl, origRef, lazyRef, convert.Options{}); err != nil {
		return err
	}
	if _, err := ctrd.Ctr(ctx, "image", "push", "--plain-http", lazyRef); err != nil {
		return err
	}
	// Forget both images so that the lazy pull starts from nothing.
	if _, err := ctrd.Ctr(ctx, "image", "rm", "--sync", origRef, lazyRef); err != nil {
		return err
	}
	imageSize, err := registryBlobBytes(reg.Dir())
	if err != nil {
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
	out, err := ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm", pullRef, "lazyfs-demo",
		"sh", "-c", "sha256sum -c "+harness.TestImageChecksumsPath+" | tail -n 3 && echo all files verified")
	if err != nil {
		return err
	}
	runTime := time.Since(start)
	fmt.Print(indent(out))
	if !strings.Contains(out, "all files verified") {
		return fmt.Errorf("container output lacks the verification line")
	}
	snaps, err := ctrd.Ctr(ctx, "snapshots", "--snapshotter", "lazyfs", "ls")
	if err != nil {
		return err
	}

	fmt.Printf("\nlazyfs snapshots:\n%s\n", indent(snaps))
	fmt.Printf("registry blobs of both images:  %s\n", mib(imageSize))
	fmt.Printf("served by the registry for the lazy pull (TOCs only): %s in %s\n", mib(pulled), pullTime.Round(time.Millisecond))
	fmt.Printf("served for the container's reads: %s; container ran in %s\n", mib(proxy.TotalBlobBytes()-pulled), runTime.Round(time.Millisecond))
	step("demo succeeded; stopping everything it started")
	return nil
}

func registryBlobBytes(dir string) (int64, error) {
	var total int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && fi.Name() == "data" && strings.Contains(p, "/blobs/") {
			total += fi.Size()
		}
		return nil
	})
	return total, err
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}
