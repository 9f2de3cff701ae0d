// Command benchopt is `make bench-optimize`: does an image optimized with
// `snapshotterctl image optimize` start faster than the plain eStargz
// conversion of the same image? Both are pulled lazily and run the same
// first command (which reads a set of small files spread over a layer) on a
// fresh lazyfs and containerd 2.3.7 per run, through a proxy that adds a
// latency to every registry request (an emulated remote registry). It
// reports the medians over the runs of the pull + first command time, the
// registry requests and bytes, and the ratio optimized / plain measured in
// the same run; the order of the two alternates between runs.
//
// Usage: go run ./tests/benchopt [-runs 5] [-latency 20ms] [-reads 150]
//
// It needs root, /dev/fuse, the tools of scripts/install-deps.sh and `make
// build` (it runs bin/snapshotterctl image optimize to prepare the image).
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/log"
	"github.com/containerd/platforms"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/tests/harness"
)

const (
	repo     = "lazyfs/benchopt"
	origTag  = "v1"
	plainTag = "estargz"
	optTag   = "optimized"

	dirs       = 30
	perDir     = 100 // small files, 512 B to 4 KiB
	fillerSize = 2 << 20
	fileSeed   = 11
)

type options struct {
	runs    int
	latency time.Duration
	reads   int
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 5, "measured runs; the report gives medians")
	flag.DurationVar(&o.latency, "latency", 20*time.Millisecond, "added to every registry request (emulated remote registry)")
	flag.IntVar(&o.reads, "reads", 150, "small files the first command reads, in a seeded random order")
	flag.Parse()
	if o.runs < 1 || o.reads < 1 || o.reads > dirs*perDir || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: benchopt [-runs N>=1] [-latency D] [-reads 1..3000]")
		os.Exit(2)
	}
	_ = log.SetLevel("warn")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchopt failed: %v\n", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// appLayers is a busybox base and a layer of small files with 2 MiB of
// incompressible filler after every directory, so that the files a command
// reads sit far apart in the plain blob.
func appLayers(busybox []byte) []harness.Layer {
	base := harness.Layer{
		{Path: "/bin", Mode: os.ModeDir | 0o755},
		{Path: "/bin/busybox", Mode: 0o755, Content: busybox},
		{Path: "/bin/sh", Mode: os.ModeSymlink | 0o777, Linkname: "busybox"},
		{Path: "/bin/cat", Mode: os.ModeSymlink | 0o777, Linkname: "busybox"},
		{Path: "/etc", Mode: os.ModeDir | 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{Path: "/etc/group", Mode: 0o644, Content: []byte("root:x:0:\n")},
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp"} {
		base = append(base, harness.File{Path: d, Mode: os.ModeDir | 0o755})
	}
	rng := rand.New(rand.NewPCG(fileSeed, 0))
	app := harness.Layer{{Path: "/app", Mode: os.ModeDir | 0o755}}
	for d := range dirs {
		dir := fmt.Sprintf("/app/d%02d", d)
		app = append(app, harness.File{Path: dir, Mode: os.ModeDir | 0o755})
		for f := range perDir {
			content := make([]byte, 512+rng.IntN(4096-512+1))
			for i := range content {
				content[i] = 'a' + byte(rng.IntN(16))
			}
			app = append(app, harness.File{Path: fmt.Sprintf("%s/f%03d", dir, f), Mode: 0o644, Content: content})
		}
		filler := make([]byte, fillerSize)
		for i := range filler {
			filler[i] = byte(rng.Uint32())
		}
		app = append(app, harness.File{Path: dir + "/zz-filler", Mode: 0o644, Content: filler})
	}
	return []harness.Layer{base, app}
}

// firstCommand reads n of the small files in a seeded random order.
func firstCommand(n int) []string {
	rng := rand.New(rand.NewPCG(fileSeed, 1))
	perm := rng.Perm(dirs * perDir)[:n]
	var b strings.Builder
	b.WriteString("cat")
	for _, i := range perm {
		fmt.Fprintf(&b, " /app/d%02d/f%03d", i/perDir, i%perDir)
	}
	b.WriteString(" > /dev/null")
	return []string{"/bin/sh", "-c", b.String()}
}

func run(ctx context.Context, o options) error {
	env, err := harness.LoadEnv()
	if err != nil {
		return err
	}
	if err := env.CheckProgram("lazyfs-snapshotter", "lazyfsd", "snapshotterctl"); err != nil {
		return err
	}
	bbPath, err := env.Busybox()
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(bbPath)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "lazyfs-benchopt-")
	if err != nil {
		return err
	}
	var stop harness.Closers
	stop.Add(func() error { return os.RemoveAll(work) })
	defer stop.Close()

	reg, err := harness.StartRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	stop.Add(reg.Close)
	proxy, err := harness.StartProxy(reg.Addr())
	if err != nil {
		return err
	}
	stop.Add(proxy.Close)
	cmd := firstCommand(o.reads)
	if err := prepare(ctx, env, work, reg.Addr(), bb, cmd); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}

	proxy.SetLatency(o.latency)
	var plain, opt []sample
	for i := range o.runs {
		order := []string{plainTag, optTag}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, tag := range order {
			s, err := measure(ctx, env, proxy, filepath.Join(work, fmt.Sprintf("run%d-%s", i+1, tag)), tag, cmd)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", i+1, tag, err)
			}
			progress("run %d/%d %-9s pull + first command %.3f s, %d registry requests, %.2f MiB",
				i+1, o.runs, tag, s.seconds, s.requests, float64(s.bytes)/(1<<20))
			if tag == plainTag {
				plain = append(plain, s)
			} else {
				opt = append(opt, s)
			}
		}
	}
	report(o, plain, opt)
	return nil
}

// prepare pushes the original image, its plain eStargz conversion and the
// optimized one (snapshotterctl image optimize with the first command).
func prepare(ctx context.Context, env harness.Env, work, regAddr string, busybox []byte, cmd []string) error {
	layout := filepath.Join(work, "layout")
	if _, err := harness.WriteOCILayout(layout, origTag, appLayers(busybox)); err != nil {
		return err
	}
	orig := regAddr + "/" + repo + ":" + origTag
	if err := harness.Push(ctx, layout, origTag, orig); err != nil {
		return err
	}
	var stop harness.Closers
	defer stop.Close()
	sn, err := harness.StartSnapshotter(ctx, harness.SnapshotterOptions{Env: env})
	if err != nil {
		return err
	}
	stop.Add(sn.Close)
	ctrd, err := harness.StartContainerd(ctx, harness.ContainerdOptions{Env: env, LazyfsAddress: sn.Address(), LazyfsRoot: sn.Root()})
	if err != nil {
		return err
	}
	stop.Add(ctrd.Close)
	cl, err := ctrd.Client(ctx)
	if err != nil {
		return err
	}
	plainRef := regAddr + "/" + repo + ":" + plainTag
	progress("converting %s to eStargz", orig)
	if _, err := ctrd.Ctr(ctx, "image", "pull", "--plain-http", orig); err != nil {
		return err
	}
	if _, err := convert.Image(ctx, cl, orig, plainRef, convert.Options{}); err != nil {
		return err
	}
	if _, err := ctrd.Ctr(ctx, "image", "push", "--plain-http", plainRef); err != nil {
		return err
	}
	progress("optimizing it with snapshotterctl image optimize")
	args := append([]string{"image", "optimize", "--address", ctrd.Address(), "--run-dir", sn.RunDir(),
		"--config", sn.ConfigPath(), "--push", plainRef, regAddr + "/" + repo + ":" + optTag, "--"}, cmd...)
	out, err := exec.CommandContext(ctx, env.Bin("snapshotterctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("snapshotterctl image optimize: %w\n%s", err, out)
	}
	img, err := cl.ImageService().Get(ctx, plainRef)
	if err != nil {
		return err
	}
	m, err := images.Manifest(ctx, cl.ContentStore(), img.Target, platforms.Default())
	if err != nil {
		return err
	}
	progress("images ready: %d layers each", len(m.Layers))
	return nil
}

type sample struct {
	seconds  float64
	requests int
	bytes    int64
}

// measure pulls repo:tag lazily through the proxy on a fresh stack and runs
// the first command.
func measure(ctx context.Context, env harness.Env, proxy *harness.Proxy, dir, tag string, cmd []string) (sample, error) {
	var stop harness.Closers
	defer stop.Close()
	sn, err := harness.StartSnapshotter(ctx, harness.SnapshotterOptions{Env: env})
	if err != nil {
		return sample{}, err
	}
	stop.Add(sn.Close)
	ctrd, err := harness.StartContainerd(ctx, harness.ContainerdOptions{Env: env, LazyfsAddress: sn.Address(), LazyfsRoot: sn.Root()})
	if err != nil {
		return sample{}, err
	}
	stop.Add(ctrd.Close)
	ref := proxy.Addr() + "/" + repo + ":" + tag
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return sample{}, fmt.Errorf("failed to drop the page cache: %w", err)
	}
	proxy.Reset()
	start := time.Now()
	if _, err := ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", "lazyfs", ref); err != nil {
		return sample{}, err
	}
	if _, err := ctrd.CtrRun(ctx, append([]string{"--rm", "--snapshotter", "lazyfs", ref, "benchopt"}, cmd...)...); err != nil {
		return sample{}, err
	}
	return sample{seconds: time.Since(start).Seconds(), requests: proxy.TotalBlobRequests(), bytes: proxy.TotalBlobBytes()}, nil
}

func report(o options, plain, opt []sample) {
	med := func(ss []sample, f func(sample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	secs := func(s sample) float64 { return s.seconds }
	reqs := func(s sample) float64 { return float64(s.requests) }
	mibs := func(s sample) float64 { return float64(s.bytes) / (1 << 20) }
	fmt.Printf("\nimage optimize: medians of %d cold runs, %s added per registry request, first command reads %d small files\n\n", o.runs, o.latency, o.reads)
	fmt.Printf("| row | plain eStargz | optimized | optimized / plain |\n|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		f    func(sample) float64
		unit string
	}{{"pull + first command", secs, "s"}, {"registry requests", reqs, ""}, {"registry MiB", mibs, ""}} {
		p, q := med(plain, row.f), med(opt, row.f)
		fmt.Printf("| %s | %.3f %s | %.3f %s | %.2f |\n", row.name, p, row.unit, q, row.unit, q/p)
	}
}
