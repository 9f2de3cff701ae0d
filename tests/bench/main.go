// Command bench is `make bench-e2e`: it measures lazyfs end to end against
// a baseline measured in the same run, with a real registry (on loopback, or
// behind a proxy emulating a remote one: -network remote), containerd 2.3.7,
// runc and FUSE, and reports medians over the runs:
//
//  1. pull + first command: an eStargz image pulled lazily with the lazyfs
//     snapshotter and `ctr run --rm … true`, with the default configuration
//     and with prefetch and background proofs off, against a full pull of
//     the original image with overlayfs; times, registry requests and bytes;
//     and the image optimized for that command (`snapshotterctl image
//     optimize … -- true`) on a stack of its own;
//  2. a cold sequential read of a 64 MiB file from the host through the
//     image's rootfs view, lazyfs against overlayfs after the full pull,
//     plus a warm second read through lazyfs;
//  3. on the stack without background fetching (nothing fetched the data
//     before): cold reads of the 64 MiB file and of 2,000 small files, the
//     warm read, and the worker's memory after the pull and the reads;
//  4. the memory (VmRSS, VmHWM) of the worker serving a layer of 300,000
//     entries, after the lazy pull and after an lstat walk of the tree,
//     judged against 200 MiB;
//  5. with -stargz (make bench-e2e sets it), stargz-snapshotter v0.18.2
//     (bin/stargz, tests/stargz) on a stack of its own: pull + first
//     command, cold and warm reads, its memory, and lazyfs/stargz ratios.
//
// The app image is a Debian bookworm minbase rootfs, 2,000 × 4 KiB files,
// a 64 MiB file and four 16 MiB files in four layers (190 MiB).
//
// Usage: go run ./tests/bench [-runs 5] [-stargz] [-network loopback|remote] [-json FILE] [-entries N] [-cache DIR]
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
	"slices"
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
	network  string
	// background runs the background-fetch scenario (background.go)
	// instead of the three above, with bgRate as [fetch] background_rate.
	background bool
	bgRate     string
	// quiet runs only the quiet scenario (quiet.go), against the
	// baseline binaries in compare if set, sampling workers with perf
	// into perfDir if set.
	quiet   bool
	compare string
	perfDir string
	// stargz also measures stargz-snapshotter (bin/stargz) side by side.
	stargz bool
}

// networks are the registry links -network emulates with the counting
// proxy: loopback as is, and a remote registry (20 ms added to every
// request, blob bodies capped at 200 Mbit/s for all responses together).
var networks = map[string]struct {
	latency   time.Duration
	bandwidth int64 // bits per second; 0: none
	note      string
}{
	"loopback": {note: "registry: docker-registry on loopback behind the harness proxy, no added latency; registry bytes are blob response bodies"},
	"remote": {latency: 20 * time.Millisecond, bandwidth: 200e6,
		note: "registry: docker-registry behind the harness proxy emulating a remote registry: 20 ms added to every request, blob bodies capped at 200 Mbit/s (all responses together); registry bytes are blob response bodies"},
}

func main() {
	var opts options
	flag.IntVar(&opts.runs, "runs", 5, "number of measured runs; the report gives medians over them")
	flag.StringVar(&opts.jsonPath, "json", "", "also write the report as JSON to this file")
	flag.IntVar(&opts.entries, "entries", 300_000, "entries of the many-entry layer (directories included)")
	flag.StringVar(&opts.logsDir, "logs", "", "copy the logs of every run's snapshotter, workers and containerd into this directory")
	flag.StringVar(&opts.network, "network", "loopback", "registry link to emulate: loopback or remote (20 ms per request, 200 Mbit/s)")
	flag.StringVar(&opts.cacheDir, "cache", "/var/cache/lazyfs-bench", "directory keeping eStargz conversions between invocations; empty converts every time")
	flag.BoolVar(&opts.background, "background", false, "measure background fetch instead: the cold read with it on and off, and the time until an image is fully cached against a full pull")
	flag.BoolVar(&opts.stargz, "stargz", false, "also measure stargz-snapshotter "+stargzVersion+" (bin/stargz, built from tests/stargz) on a stack of its own, side by side")
	flag.StringVar(&opts.bgRate, "background-rate", "0", "with -background: [fetch] background_rate of the side with background fetch on")
	flag.BoolVar(&opts.quiet, "quiet", false, "measure only lazyfs with prefetch and proofs off: cold and warm reads of the 64 MiB file, the small files, the worker's memory")
	flag.StringVar(&opts.compare, "compare", "", "with -quiet or -background: a directory of baseline binaries (lazyfs-snapshotter, lazyfsd) measured in the same runs, order alternating")
	flag.StringVar(&opts.perfDir, "perf", "", "with -quiet: record the worker with perf(1) during the reads, into this directory")
	flag.Parse()
	if _, ok := networks[opts.network]; opts.runs < 1 || opts.entries < 2*manyDirs || flag.NArg() > 0 || !ok {
		fmt.Fprintf(os.Stderr, "usage: bench [-runs N>=1] [-json FILE] [-entries N>=%d] [-cache DIR] [-logs DIR] [-network loopback|remote]\n", 2*manyDirs)
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
	if opts.background || opts.quiet {
		entries = 0 // the many-entry image is not used
	}
	imgs, err := prepare(ctx, env, work, reg, conversionCache{dir: opts.cacheDir}, entries)
	if err != nil {
		return err
	}
	nw := networks[opts.network]
	proxy.SetLatency(nw.latency)
	proxy.SetBandwidth(nw.bandwidth)
	if opts.quiet {
		all, err := runQuietCompare(ctx, env, proxy, imgs, work, opts)
		if err != nil {
			return err
		}
		printQuiet(os.Stdout, all)
		if opts.jsonPath != "" {
			if err := writeJSON(opts.jsonPath, all); err != nil {
				return err
			}
		}
		progress("done in %s; stopping everything", time.Since(started).Round(time.Second))
		return nil
	}
	if opts.background {
		// With -compare, the baseline's binaries run the same scenario in
		// the same runs, the builds' order alternating.
		envs := []harness.Env{env}
		if opts.compare != "" {
			base := env
			base.BinDir = opts.compare
			if err := base.CheckProgram("lazyfs-snapshotter", "lazyfsd"); err != nil {
				return err
			}
			envs = append(envs, base)
		}
		perEnv := make([][]bgResult, len(envs))
		var results []bgResult
		for i := range opts.runs {
			for k := range envs {
				if i%2 == 1 {
					k = len(envs) - 1 - k
				}
				r, err := runBackground(ctx, envs[k], proxy, imgs, filepath.Join(work, fmt.Sprintf("run%d-%d", i+1, k)), opts.logsDir, opts.bgRate, i+1, opts.runs)
				if err != nil {
					return fmt.Errorf("run %d (%s): %w", i+1, envs[k].BinDir, err)
				}
				perEnv[k] = append(perEnv[k], r)
			}
		}
		results = perEnv[0]
		for k := range envs {
			fmt.Printf("\nbinaries: %s", envs[k].BinDir)
			printBackground(os.Stdout, opts.bgRate, perEnv[k])
		}
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
		r, err := runOnce(ctx, env, proxy, imgs, filepath.Join(work, fmt.Sprintf("run%d", i+1)), opts.logsDir, opts.stargz, i+1, opts.runs)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}

	rep := newReport(started, describeMachine(env), opts.entries, results)
	rep.Network = opts.network
	rep.Notes = append([]string{nw.note}, rep.Notes...)
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
func runOnce(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, dir, logsDir string, withStargz bool, n, of int) (r runResult, err error) {
	r = runResult{Run: n, LazyFirst: n%2 == 1}
	// First, alone: the other stack's background proofs would add their
	// bytes to its reads (they share the registry). stargz, on a stack of
	// its own too, goes before or after it, alternating.
	lazyRef := ref(proxy.Addr(), appRepo, lazyTag)
	quiet := func() error {
		return quietRun(ctx, env, proxy, imgs, lazyRef, filepath.Join(dir, "quiet"), n, of, &r)
	}
	peer := func() error {
		sr, err := stargzRun(ctx, env, proxy, imgs, lazyRef, filepath.Join(dir, "stargz"), n, of)
		r.Stargz = &sr
		return err
	}
	optimized := func() (err error) {
		r.Optimized, err = optimizedRun(ctx, env, proxy, filepath.Join(dir, "optimized"), n, of)
		return err
	}
	alone := []func() error{quiet, optimized}
	if withStargz {
		alone = append(alone, peer)
	}
	if !r.LazyFirst {
		slices.Reverse(alone)
	}
	for _, f := range alone {
		if err := f(); err != nil {
			return r, err
		}
	}
	progress("run %d/%d: starting lazyfs-snapshotter and containerd", n, of)
	var stop harness.Closers
	defer stop.Close()
	st, err := startStack(ctx, env, proxy, dir, nil, &stop)
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
		if r.FullRead, err = readBigFile(ctx, st, fullRef, "overlayfs", imgs.bigSHA256, false); err != nil {
			return err
		}
		r.FullSmall, err = readSmallFiles(ctx, st, fullRef, "overlayfs")
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

// quietRun measures lazyfs with no background fetching (quietConfig) on a
// stack of its own, so that it starts as cold as the others: the pull and
// first command, then cold reads that nothing fetched before (the 64 MiB
// file, then the small files), and the worker's memory after them.
func quietRun(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, ref, dir string, n, of int, r *runResult) error {
	progress("run %d/%d: lazy pull of %s + first command, prefetch and background proofs off; cold reads", n, of, ref)
	return withStack(ctx, func(stop *harness.Closers) (*stack, error) {
		return startStack(ctx, env, proxy, dir, quietConfig, stop)
	}, func(st *stack) (err error) {
		if r.LazyQuiet, err = pullAndRun(ctx, st, ref, "lazyfs", fmt.Sprintf("bench-quiet-%d", n)); err != nil {
			return err
		}
		w, err := findWorker(ctx, st.sn.RunDir(), ref)
		if err != nil || w == nil {
			return fmt.Errorf("no worker serves %s: %v", ref, err)
		}
		if r.QuietWorkerIdle, err = readMemStatus(ctx, w); err != nil {
			return err
		}
		if r.QuietRead, err = readBigFile(ctx, st, ref, "lazyfs", imgs.bigSHA256, true); err != nil {
			return err
		}
		if r.QuietSmall, err = readSmallFiles(ctx, st, ref, "lazyfs"); err != nil {
			return err
		}
		if r.QuietWorkerRead, err = readMemStatus(ctx, w); err != nil {
			return err
		}
		if r.QuietWorkerRested, err = restedMemStatus(ctx, w); err != nil {
			return err
		}
		progress("    worker %s idle after the pull: %s; after the reads: %s; idle after them: %s", w.id, r.QuietWorkerIdle, r.QuietWorkerRead, r.QuietWorkerRested)
		return nil
	})
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
