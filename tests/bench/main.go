// Command bench is `make bench-e2e`: it measures lazyfs end to end against
// a baseline measured in the same run, with a real registry, containerd
// 2.3.7, runc and FUSE, and reports medians over the runs:
//
//  1. pull + first command: an eStargz image pulled lazily with the lazyfs
//     snapshotter and `ctr run --rm … true`, against a full pull of the
//     original image with overlayfs; times and registry bytes;
//  2. a cold sequential read of a 64 MiB file from the host through the
//     image's rootfs view, lazyfs against overlayfs after the full pull,
//     plus a warm second read through lazyfs;
//  3. the memory (VmRSS, VmHWM) of the worker serving a layer of 300,000
//     entries, after the lazy pull and after an lstat walk of the tree,
//     judged against 200 MiB.
//
// Usage: go run ./tests/bench [-runs 3] [-json FILE] [-entries N] [-cache DIR]
//
// It needs root (mounts, containerd, drop_caches), /dev/fuse, the tools of
// scripts/install-deps.sh and `make build`. Each run starts a fresh
// snapshotter and containerd, so every run is cold; the page cache is
// dropped before every timed pull and cold read, which affects the whole
// machine. Everything started is stopped at the end, also on failure or
// Ctrl-C (a second Ctrl-C exits at once and may leave processes behind);
// on failure the logs of the processes are printed.
//
// Converting the 300,000-entry layer to eStargz takes minutes, so the
// conversions are kept in -cache (default /var/cache/lazyfs-bench), keyed by
// the source image, the options, the estargz version and the sources of
// package convert; the first invocation on a machine is the slow one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/tests/harness"
)

type options struct {
	runs     int
	jsonPath string
	entries  int
	cacheDir string
	logsDir  string
	// background runs the background-fetch scenario (background.go)
	// instead of the three above, with bgRate as [fetch] background_rate.
	background bool
	bgRate     string
}

func main() {
	var opts options
	flag.IntVar(&opts.runs, "runs", 3, "number of measured runs; the report gives medians over them")
	flag.StringVar(&opts.jsonPath, "json", "", "also write the report as JSON to this file")
	flag.IntVar(&opts.entries, "entries", 300_000, "entries of the many-entry layer (directories included)")
	flag.StringVar(&opts.logsDir, "logs", "", "copy the logs of every run's snapshotter, workers and containerd into this directory")
	flag.StringVar(&opts.cacheDir, "cache", "/var/cache/lazyfs-bench", "directory keeping eStargz conversions between invocations; empty converts every time")
	flag.BoolVar(&opts.background, "background", false, "measure background fetch instead: the cold read with it on and off, and the time until an image is fully cached against a full pull")
	flag.StringVar(&opts.bgRate, "background-rate", "0", "with -background: [fetch] background_rate of the side with background fetch on")
	flag.Parse()
	if opts.runs < 1 || opts.entries < 2*manyDirs || flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "usage: bench [-runs N>=1] [-json FILE] [-entries N>=%d] [-cache DIR] [-logs DIR]\n", 2*manyDirs)
		os.Exit(2)
	}

	// The converter logs every layer at info level; the progress lines say
	// enough.
	_ = log.SetLevel("warn")
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once interrupted, a second signal gets its default effect: the user
	// insists, and teardown is skipped.
	go func() {
		<-ctx.Done()
		stopSignals()
	}()
	if err := run(ctx, opts); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "\nbench interrupted; everything it started is stopped\n")
		} else {
			fmt.Fprintf(os.Stderr, "\nbench failed: %v\n", err)
		}
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, opts options) (err error) {
	started := time.Now()
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
	// The conversion's scratch space goes to TMPDIR; so does ours.
	work, err := os.MkdirTemp("", "lazyfs-bench-")
	if err != nil {
		return err
	}
	var stop harness.Closers
	stop.Add(func() error { return os.RemoveAll(work) })
	defer stop.Close()
	var logs []string
	defer func() {
		if err != nil && ctx.Err() == nil {
			harness.PrintLogs(os.Stderr, logs)
		}
	}()

	progress("starting a registry and a counting proxy on 127.0.0.1")
	reg, err := harness.StartRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	stop.Add(reg.Close)
	logs = append(logs, reg.Logs()...)
	proxy, err := harness.StartProxy(reg.Addr())
	if err != nil {
		return err
	}
	stop.Add(proxy.Close)

	entries := opts.entries
	if opts.background {
		entries = 0 // the many-entry image is not used
	}
	imgs, err := prepare(ctx, env, busybox, work, reg, conversionCache{dir: opts.cacheDir}, entries)
	if err != nil {
		return err
	}
	if opts.background {
		var results []bgResult
		for i := range opts.runs {
			r, err := runBackground(ctx, env, proxy, imgs, filepath.Join(work, fmt.Sprintf("run%d", i+1)), opts.logsDir, opts.bgRate, i+1, opts.runs)
			if err != nil {
				return fmt.Errorf("run %d: %w", i+1, err)
			}
			results = append(results, r)
		}
		printBackground(os.Stdout, opts.bgRate, results)
		if opts.jsonPath != "" {
			if err := writeJSON(opts.jsonPath, results); err != nil {
				return err
			}
			progress("wrote %s", opts.jsonPath)
		}
		progress("done in %s; stopping everything", time.Since(started).Round(time.Second))
		return nil
	}
	var results []runResult
	for i := range opts.runs {
		r, err := runOnce(ctx, env, proxy, imgs, filepath.Join(work, fmt.Sprintf("run%d", i+1)), opts.logsDir, i+1, opts.runs)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}

	rep := newReport(started, describeMachine(env), opts.entries, results)
	rep.printTable(os.Stdout)
	if opts.jsonPath != "" {
		if err := rep.writeJSON(opts.jsonPath); err != nil {
			return err
		}
		progress("wrote %s", opts.jsonPath)
	}
	progress("done in %s; stopping everything", time.Since(started).Round(time.Second))
	return nil
}

// runOnce measures the three scenarios on a fresh stack. On failure it
// prints the stack's logs before tearing it down (teardown removes them).
func runOnce(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, dir, logsDir string, n, of int) (r runResult, err error) {
	r = runResult{Run: n, LazyFirst: n%2 == 1}
	progress("run %d/%d: starting lazyfs-snapshotter and containerd", n, of)
	var stop harness.Closers
	defer stop.Close()
	st, err := startStack(ctx, env, proxy, dir, &stop)
	defer func() {
		if err != nil && ctx.Err() == nil {
			harness.PrintLogs(os.Stderr, st.logs())
		}
		if logsDir != "" {
			if cerr := copyLogs(st.logs(), filepath.Join(logsDir, fmt.Sprintf("run%d", n))); cerr != nil {
				progress("warning: %v", cerr)
			}
		}
	}()
	if err != nil {
		return r, err
	}

	lazyRef := ref(proxy.Addr(), appRepo, lazyTag)
	fullRef := ref(proxy.Addr(), appRepo, origTag)
	lazy := func() (err error) {
		progress("run %d/%d: lazy pull of %s + first command, then cold read", n, of, lazyRef)
		if r.Lazy, err = pullAndRun(ctx, st, lazyRef, "lazyfs", fmt.Sprintf("bench-lazy-%d", n)); err != nil {
			return err
		}
		r.LazyRead, err = readBigFile(ctx, st, lazyRef, "lazyfs", imgs.bigSHA256, true)
		return err
	}
	full := func() (err error) {
		progress("run %d/%d: full pull of %s + first command, then cold read", n, of, fullRef)
		if r.Full, err = pullAndRun(ctx, st, fullRef, "overlayfs", fmt.Sprintf("bench-full-%d", n)); err != nil {
			return err
		}
		r.FullRead, err = readBigFile(ctx, st, fullRef, "overlayfs", imgs.bigSHA256, false)
		return err
	}
	order := []func() error{lazy, full}
	if !r.LazyFirst {
		order = []func() error{full, lazy}
	}
	for _, f := range order {
		if err := f(); err != nil {
			return r, err
		}
	}

	for _, rr := range []readResult{r.LazyRead, r.FullRead} {
		if rr.ResidentPct > 1 {
			r.Findings = append(r.Findings, fmt.Sprintf("%.0f%% of %s was in the page cache through %s right before the cold read, despite drop_caches", rr.ResidentPct, bigFilePath, rr.Snapshotter))
		}
	}

	manyRef := ref(proxy.Addr(), manyRepo, lazyTag)
	progress("run %d/%d: lazy pull of %s (%d entries)", n, of, manyRef, imgs.manyEntries)
	if r.Many, err = pullMany(ctx, st, manyRef); err != nil {
		return r, err
	}
	if r.Many.Refused {
		r.Findings = append(r.Findings, fmt.Sprintf("the %d-entry layer was not mounted lazily (refused by the worker or the snapshotter); no worker memory to measure", imgs.manyEntries))
	} else if r.Many.Entries != imgs.manyEntries {
		r.Findings = append(r.Findings, fmt.Sprintf("the walk of the %d-entry layer found %d entries", imgs.manyEntries, r.Many.Entries))
	}
	r.Findings = append(r.Findings, st.notableLogLines()...)
	return r, nil
}

func describeMachine(env harness.Env) machine {
	m := machine{CPUs: runtime.NumCPU(), Containerd: "2.3.7", Lazyfs: "unknown"}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.Command(env.Bin("lazyfsd"), "--version").Output(); err == nil {
		m.Lazyfs = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "lazyfsd"))
	}
	return m
}
