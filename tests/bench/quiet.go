package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// quietSide is one build of lazyfs measured by -quiet: the binaries of
// env.BinDir.
type quietSide struct {
	name string
	env  harness.Env
}

// quietSample is one side's quiet run: the cold and warm read of the 64 MiB
// file, the cold read of the small files, and the worker's memory.
type quietSample struct {
	Side  string      `json:"side"`
	Read  readResult  `json:"read"`
	Small smallResult `json:"small_files"`
	Idle  memStatus   `json:"worker_idle"`
	// WorkerCPU is the CPU time (user + system) the worker spent during
	// the cold and warm reads of the 64 MiB file: unlike wall-clock time,
	// it hardly changes with the machine's load.
	WorkerCPU float64   `json:"worker_cpu_s"`
	AfterRead memStatus `json:"worker_after_reads"`
	Rested    memStatus `json:"worker_rested"` // idleWait after the reads
}

// runQuietCompare is -quiet: only the "quiet" scenario (lazyfs with prefetch
// and background proofs off; runOnce's first part), once per side per run,
// the sides' order alternating from run to run so that a change of the
// machine's load weighs on both alike. With -compare, the second side is
// the binaries of that directory (a baseline build), and each run's ratio
// is reported. With -perf, the worker is sampled by perf(1) during each
// cold read, into that directory.
func runQuietCompare(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, work string, opts options) ([][]quietSample, error) {
	sides := []quietSide{{name: "this build", env: env}}
	if opts.compare != "" {
		base := env
		base.BinDir = opts.compare
		if err := base.CheckProgram("lazyfs-snapshotter", "lazyfsd"); err != nil {
			return nil, err
		}
		sides = append(sides, quietSide{name: "baseline " + opts.compare, env: base})
	}
	var all [][]quietSample
	for i := range opts.runs {
		order := slices.Clone(sides)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		samples := make([]quietSample, len(sides))
		for _, s := range order {
			dir := filepath.Join(work, fmt.Sprintf("run%d-%s", i+1, sideKey(s, sides)))
			smp, err := quietSample1(ctx, s, proxy, imgs, dir, opts.perfDir, i+1, opts.runs)
			if err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", i+1, s.name, err)
			}
			samples[slices.IndexFunc(sides, func(x quietSide) bool { return x.name == s.name })] = smp
		}
		all = append(all, samples)
	}
	return all, nil
}

func sideKey(s quietSide, sides []quietSide) string {
	if s.name == sides[0].name {
		return "this"
	}
	return "base"
}

func quietSample1(ctx context.Context, s quietSide, proxy *harness.Proxy, imgs benchImages, dir, perfDir string, n, of int) (_ quietSample, err error) {
	ref := ref(proxy.Addr(), appRepo, lazyTag)
	progress("run %d/%d (%s): lazy pull of %s + first command, prefetch and background proofs off; cold reads", n, of, s.name, ref)
	var stop harness.Closers
	defer stop.Close()
	st, err := startStack(ctx, s.env, proxy, dir, quietConfig, &stop)
	defer func() {
		if err != nil && ctx.Err() == nil {
			harness.PrintLogs(os.Stderr, st.logs())
		}
	}()
	if err != nil {
		return quietSample{}, err
	}
	smp := quietSample{Side: s.name}
	if _, err = pullAndRun(ctx, st, ref, "lazyfs", fmt.Sprintf("bench-quiet-%d", n)); err != nil {
		return smp, err
	}
	w, err := findWorker(ctx, st.sn.RunDir(), ref)
	if err != nil || w == nil {
		return smp, fmt.Errorf("no worker serves %s: %v", ref, err)
	}
	if smp.Idle, err = readMemStatus(ctx, w); err != nil {
		return smp, err
	}
	stopPerf := func() {}
	if perfDir != "" {
		// Only the cold and warm reads of the 64 MiB file are sampled.
		if stopPerf, err = startPerf(ctx, w.pid, filepath.Join(perfDir, fmt.Sprintf("run%d-%s.data", n, filepath.Base(dir)))); err != nil {
			return smp, err
		}
	}
	cpu0, err := cpuSeconds(w.pid)
	if err != nil {
		return smp, err
	}
	smp.Read, err = readBigFile(ctx, st, ref, "lazyfs", imgs.bigSHA256, true)
	stopPerf()
	cpu1, cerr := cpuSeconds(w.pid)
	if cerr != nil {
		return smp, cerr
	}
	smp.WorkerCPU = cpu1 - cpu0
	if err != nil {
		return smp, err
	}
	if smp.Small, err = readSmallFiles(ctx, st, ref, "lazyfs"); err != nil {
		return smp, err
	}
	if smp.AfterRead, err = readMemStatus(ctx, w); err != nil {
		return smp, err
	}
	if smp.Rested, err = restedMemStatus(ctx, w); err != nil {
		return smp, err
	}
	progress("    worker %s idle after the pull: %s; after the reads: %s; idle after them: %s", w.id, smp.Idle, smp.AfterRead, smp.Rested)
	return smp, nil
}

// cpuSeconds returns the user and system CPU time of process pid, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ")".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected stat of pid %d: %q", pid, data)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected stat of pid %d: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("unexpected stat of pid %d: %w", pid, err)
	}
	return float64(utime+stime) / 100, nil
}

// startPerf samples pid with call graphs until the returned func is called.
func startPerf(ctx context.Context, pid int, out string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "perf", "record", "-F", "2000", "-g", "-o", out, "-p", fmt.Sprint(pid))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start perf: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}, nil
}

// printQuiet prints each side's medians and, with two sides, the ratios.
func printQuiet(w io.Writer, all [][]quietSample) {
	if len(all) == 0 {
		return
	}
	sides := len(all[0])
	col := func(side int, f func(quietSample) float64) []float64 {
		var v []float64
		for _, run := range all {
			v = append(v, f(run[side]))
		}
		return v
	}
	rows := []struct {
		label, unit, format string
		f                   func(quietSample) float64
	}{
		{"cold read of the 64 MiB file", "s", "%.3f", func(s quietSample) float64 { return coldSeconds(s.Read) }},
		{"  registry requests during it", "", "%.0f", func(s quietSample) float64 { return float64(s.Read.RegistryRequests) }},
		{"  worker CPU time during the reads", "s", "%.3f", func(s quietSample) float64 { return s.WorkerCPU }},
		{"warm read of the 64 MiB file", "s", "%.3f", func(s quietSample) float64 { return bigSeconds(s.Read.WarmMiBps) }},
		{"cold read of the small files", "s", "%.3f", func(s quietSample) float64 { return s.Small.Seconds }},
		{"worker VmRSS after the pull", "MiB", "%.1f", func(s quietSample) float64 { return kibToMiB(s.Idle.VmRSSKiB) }},
		{"worker VmRSS after the reads", "MiB", "%.1f", func(s quietSample) float64 { return kibToMiB(s.AfterRead.VmRSSKiB) }},
		{"worker VmRSS idle, 12 s after the reads", "MiB", "%.1f", func(s quietSample) float64 { return kibToMiB(s.Rested.VmRSSKiB) }},
		{"worker VmHWM (peak) after the reads", "MiB", "%.1f", func(s quietSample) float64 { return kibToMiB(s.AfterRead.VmHWMKiB) }},
	}
	fmt.Fprintf(w, "\nquiet lazyfs (prefetch and proofs off), medians of %d runs (range)\n", len(all))
	for side := range sides {
		fmt.Fprintf(w, " %s\n", all[0][side].Side)
		for _, r := range rows {
			v := col(side, r.f)
			fmt.Fprintf(w, "  %-40s %10s %-4s (%s … %s)\n", r.label, fmt.Sprintf(r.format, median(v)), r.unit,
				fmt.Sprintf(r.format, slices.Min(v)), fmt.Sprintf(r.format, slices.Max(v)))
		}
	}
	if sides == 2 {
		cold := func(s quietSample) float64 { return coldSeconds(s.Read) }
		var per []float64
		for _, run := range all {
			per = append(per, cold(run[0])/cold(run[1]))
		}
		fmt.Fprintf(w, " cold 64 MiB, this build / baseline: median of per-run ratios %.3f (%.3f … %.3f), ratio of medians %.3f\n",
			median(per), slices.Min(per), slices.Max(per), median(col(0, cold))/median(col(1, cold)))
	}
}
