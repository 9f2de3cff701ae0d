package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// goalMiB is the worker memory the many-entry scenario is judged against.
const goalMiB = 200

// runResult is everything one run measured.
type runResult struct {
	Run int `json:"run"`
	// LazyFirst says which pull went first in this run: runs alternate,
	// so that neither side always pays the stack's first-use costs.
	LazyFirst bool       `json:"lazy_first"`
	Lazy      pullResult `json:"lazy_pull"`
	// LazyQuiet is the lazy pull with prefetch and background proofs off.
	LazyQuiet pullResult `json:"lazy_pull_quiet"`
	// QuietRead and QuietSmall are cold reads on that stack, which nothing
	// fetched in the background; QuietWorkerIdle and QuietWorkerRead the
	// memory of its worker after the pull and after those reads.
	QuietRead       readResult  `json:"lazy_quiet_read"`
	QuietSmall      smallResult `json:"lazy_quiet_small_files"`
	QuietWorkerIdle memStatus   `json:"lazy_quiet_worker_idle"`
	QuietWorkerRead memStatus   `json:"lazy_quiet_worker_after_reads"`
	// QuietWorkerRested is its memory idleWait after the reads: by then
	// the worker has handed its idle I/O buffers back.
	QuietWorkerRested memStatus   `json:"lazy_quiet_worker_rested"`
	FullSmall         smallResult `json:"overlayfs_small_files"`
	Full              pullResult  `json:"full_pull"`
	LazyRead          readResult  `json:"lazy_read"`
	FullRead          readResult  `json:"overlayfs_read"`
	Many              manyResult  `json:"many_entries"`
	// Optimized is the optimized image's pull + first command, on a lazyfs
	// stack of its own with the default configuration.
	Optimized pullResult `json:"optimized_pull"`
	// Stargz is stargz-snapshotter on a stack of its own (-stargz).
	Stargz *stargzResult `json:"stargz,omitempty"`
	// Findings are what a reader must know beyond the numbers: fallbacks,
	// errors in the logs, a walk that found the wrong number of entries.
	Findings []string `json:"findings,omitempty"`
}

// metric is one row of the report: a value taken from each run.
type metric struct {
	section string
	key     string // JSON key of the median
	label   string
	unit    string
	format  string
	// value returns false when the run has no such value (e.g. a refused
	// layer has no worker to measure).
	value func(r runResult) (float64, bool)
}

func always(f func(r runResult) float64) func(runResult) (float64, bool) {
	return func(r runResult) (float64, bool) { return f(r), true }
}

func whenLazy(f func(m manyResult) float64) func(runResult) (float64, bool) {
	return func(r runResult) (float64, bool) { return f(r.Many), !r.Many.Refused }
}

func whenHeap(f func(m manyResult) memStatus) func(runResult) (float64, bool) {
	return func(r runResult) (float64, bool) {
		st := f(r.Many)
		return mibOf(st.HeapInuseBytes), !r.Many.Refused && st.HeapInuseBytes >= 0
	}
}

// whenStargz is a metric of the runs that measured stargz-snapshotter.
func whenStargz(f func(r runResult, s stargzResult) float64) func(runResult) (float64, bool) {
	return func(r runResult) (float64, bool) {
		if r.Stargz == nil {
			return 0, false
		}
		return f(r, *r.Stargz), true
	}
}

func mibOf(n int64) float64 { return float64(n) / (1 << 20) }

func kibToMiB(n int64) float64 { return float64(n) / 1024 }

const (
	secPull   = "1. pull + first command (ctr image pull, then ctr run --rm … true)"
	secRead   = "2. sequential read of the 64 MiB file from the host, 1 MiB reads"
	secMany   = "5. lazy pull of a one-layer image with many entries"
	secStargz = "4. side by side with stargz-snapshotter " + stargzVersion + " (its defaults; -stargz): lazyfs / stargz ratios per run"
	secQuiet  = "3. cold reads with prefetch and background proofs off (nothing fetched them before), warm read, worker memory"
)

// bigSeconds is the time of a read of the 64 MiB file at mibps.
func bigSeconds(mibps float64) float64 { return float64(bigFileSize) / (1 << 20) / mibps }

var metrics = []metric{
	{secPull, "pull.lazy.total_s", "lazyfs, eStargz image: pull + run", "s", "%.3f", always(func(r runResult) float64 { return r.Lazy.TotalSeconds })},
	{secPull, "pull.lazy.pull_s", "  of which pull", "s", "%.3f", always(func(r runResult) float64 { return r.Lazy.PullSeconds })},
	{secPull, "pull.lazy.run_s", "  of which run", "s", "%.3f", always(func(r runResult) float64 { return r.Lazy.RunSeconds })},
	{secPull, "pull.lazy.registry_mib", "  registry bytes until the command ended", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.Lazy.RegistryBytes) })},
	{secPull, "pull.lazy.registry_requests", "  registry blob requests (GET, HEAD) until then", "", "%.0f", always(func(r runResult) float64 { return float64(r.Lazy.RegistryRequests) })},
	{secPull, "pull.quiet.total_s", "lazyfs, prefetch + background proof off: pull + run", "s", "%.3f", always(func(r runResult) float64 { return r.LazyQuiet.TotalSeconds })},
	{secPull, "pull.quiet.pull_s", "  of which pull", "s", "%.3f", always(func(r runResult) float64 { return r.LazyQuiet.PullSeconds })},
	{secPull, "pull.quiet.run_s", "  of which run", "s", "%.3f", always(func(r runResult) float64 { return r.LazyQuiet.RunSeconds })},
	{secPull, "pull.quiet.registry_mib", "  registry bytes until the command ended", "MiB", "%.3f", always(func(r runResult) float64 { return mibOf(r.LazyQuiet.RegistryBytes) })},
	{secPull, "pull.quiet.registry_requests", "  registry blob requests (GET, HEAD) until then", "", "%.0f", always(func(r runResult) float64 { return float64(r.LazyQuiet.RegistryRequests) })},
	{secPull, "pull.optimized.total_s", "lazyfs, image optimized for the first command: pull + run", "s", "%.3f", always(func(r runResult) float64 { return r.Optimized.TotalSeconds })},
	{secPull, "pull.optimized.pull_s", "  of which pull", "s", "%.3f", always(func(r runResult) float64 { return r.Optimized.PullSeconds })},
	{secPull, "pull.optimized.run_s", "  of which run", "s", "%.3f", always(func(r runResult) float64 { return r.Optimized.RunSeconds })},
	{secPull, "pull.optimized.registry_mib", "  registry bytes until the command ended", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.Optimized.RegistryBytes) })},
	{secPull, "pull.optimized.registry_requests", "  registry blob requests (GET, HEAD) until then", "", "%.0f", always(func(r runResult) float64 { return float64(r.Optimized.RegistryRequests) })},
	{secPull, "pull.ratio_optimized", "ratio optimized / plain eStargz (defaults), pull + run", "x", "%.3f", always(func(r runResult) float64 { return r.Optimized.TotalSeconds / r.Lazy.TotalSeconds })},
	{secPull, "pull.full.total_s", "overlayfs, original image: pull + run", "s", "%.3f", always(func(r runResult) float64 { return r.Full.TotalSeconds })},
	{secPull, "pull.full.pull_s", "  of which pull", "s", "%.3f", always(func(r runResult) float64 { return r.Full.PullSeconds })},
	{secPull, "pull.full.run_s", "  of which run", "s", "%.3f", always(func(r runResult) float64 { return r.Full.RunSeconds })},
	{secPull, "pull.full.registry_mib", "  registry bytes until the command ended", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.Full.RegistryBytes) })},
	{secPull, "pull.full.registry_requests", "  registry blob requests (GET, HEAD) until then", "", "%.0f", always(func(r runResult) float64 { return float64(r.Full.RegistryRequests) })},
	{secPull, "pull.ratio_time", "ratio lazy / full, time", "x", "%.3f", always(func(r runResult) float64 { return r.Lazy.TotalSeconds / r.Full.TotalSeconds })},
	{secPull, "pull.ratio_bytes", "ratio lazy / full, registry bytes", "x", "%.4f", always(func(r runResult) float64 {
		return float64(r.Lazy.RegistryBytes) / float64(r.Full.RegistryBytes)
	})},

	{secRead, "read.lazy_cold_mib_s", "lazyfs, cold (never fetched)", "MiB/s", "%.1f", always(func(r runResult) float64 { return r.LazyRead.ColdMiBps })},
	{secRead, "read.lazy_cold_registry_mib", "  registry bytes during the cold read", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.LazyRead.RegistryBytes) })},
	{secRead, "read.lazy_cold_registry_requests", "  registry blob requests during the cold read", "", "%.0f", always(func(r runResult) float64 { return float64(r.LazyRead.RegistryRequests) })},
	{secRead, "read.overlayfs_cold_mib_s", "overlayfs after a full pull, cold", "MiB/s", "%.1f", always(func(r runResult) float64 { return r.FullRead.ColdMiBps })},
	{secRead, "read.ratio_cold", "ratio lazy / overlayfs, cold throughput", "x", "%.3f", always(func(r runResult) float64 { return r.LazyRead.ColdMiBps / r.FullRead.ColdMiBps })},
	{secRead, "read.lazy_warm_mib_s", "lazyfs, warm second read (context)", "MiB/s", "%.1f", always(func(r runResult) float64 { return r.LazyRead.WarmMiBps })},

	{secQuiet, "quiet.read.cold_s", "lazyfs, cold read of the 64 MiB file", "s", "%.3f", always(func(r runResult) float64 { return bigSeconds(r.QuietRead.ColdMiBps) })},
	{secQuiet, "quiet.read.registry_mib", "  registry bytes during it", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.QuietRead.RegistryBytes) })},
	{secQuiet, "quiet.read.registry_requests", "  registry blob requests during it", "", "%.0f", always(func(r runResult) float64 { return float64(r.QuietRead.RegistryRequests) })},
	{secQuiet, "quiet.read.warm_s", "lazyfs, warm read of the 64 MiB file", "s", "%.3f", always(func(r runResult) float64 { return bigSeconds(r.QuietRead.WarmMiBps) })},
	{secQuiet, "overlayfs.read.cold_s", "overlayfs after a full pull, cold read of the 64 MiB file", "s", "%.3f", always(func(r runResult) float64 { return bigSeconds(r.FullRead.ColdMiBps) })},
	{secQuiet, "quiet.small.cold_s", "lazyfs, cold read of the small files", "s", "%.3f", always(func(r runResult) float64 { return r.QuietSmall.Seconds })},
	{secQuiet, "quiet.small.registry_mib", "  registry bytes during it", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.QuietSmall.RegistryBytes) })},
	{secQuiet, "quiet.small.registry_requests", "  registry blob requests during it", "", "%.0f", always(func(r runResult) float64 { return float64(r.QuietSmall.RegistryRequests) })},
	{secQuiet, "overlayfs.small.cold_s", "overlayfs after a full pull, cold read of the small files", "s", "%.3f", always(func(r runResult) float64 { return r.FullSmall.Seconds })},
	{secQuiet, "quiet.worker.idle_vmrss_mib", "lazyfs worker VmRSS after the pull + first command", "MiB", "%.1f", always(func(r runResult) float64 { return kibToMiB(r.QuietWorkerIdle.VmRSSKiB) })},
	{secQuiet, "quiet.worker.read_vmrss_mib", "lazyfs worker VmRSS after the reads", "MiB", "%.1f", always(func(r runResult) float64 { return kibToMiB(r.QuietWorkerRead.VmRSSKiB) })},
	{secQuiet, "quiet.worker.rested_vmrss_mib", "lazyfs worker VmRSS idle, 12 s after the reads", "MiB", "%.1f", always(func(r runResult) float64 { return kibToMiB(r.QuietWorkerRested.VmRSSKiB) })},
	{secQuiet, "quiet.worker.read_vmhwm_mib", "lazyfs worker VmHWM (peak) after the reads", "MiB", "%.1f", always(func(r runResult) float64 { return kibToMiB(r.QuietWorkerRead.VmHWMKiB) })},

	{secStargz, "stargz.pull.total_s", "stargz: pull + run", "s", "%.3f", whenStargz(func(_ runResult, s stargzResult) float64 { return s.Pull.TotalSeconds })},
	{secStargz, "stargz.pull.pull_s", "  of which pull", "s", "%.3f", whenStargz(func(_ runResult, s stargzResult) float64 { return s.Pull.PullSeconds })},
	{secStargz, "stargz.pull.registry_mib", "  registry bytes until the command ended", "MiB", "%.2f", whenStargz(func(_ runResult, s stargzResult) float64 { return mibOf(s.Pull.RegistryBytes) })},
	{secStargz, "stargz.pull.registry_requests", "  registry blob requests (GET, HEAD) until then", "", "%.0f", whenStargz(func(_ runResult, s stargzResult) float64 { return float64(s.Pull.RegistryRequests) })},
	{secStargz, "stargz.read.cold_s", "stargz: cold read of the 64 MiB file", "s", "%.3f", whenStargz(func(_ runResult, s stargzResult) float64 { return bigSeconds(s.Read.ColdMiBps) })},
	{secStargz, "stargz.read.warm_s", "stargz: warm read of the 64 MiB file", "s", "%.3f", whenStargz(func(_ runResult, s stargzResult) float64 { return bigSeconds(s.Read.WarmMiBps) })},
	{secStargz, "stargz.small.cold_s", "stargz: cold read of the small files", "s", "%.3f", whenStargz(func(_ runResult, s stargzResult) float64 { return s.Small.Seconds })},
	{secStargz, "stargz.vmrss_mib", "stargz: VmRSS after the reads (one process)", "MiB", "%.1f", whenStargz(func(_ runResult, s stargzResult) float64 { return kibToMiB(s.Mem.VmRSSKiB) })},
	{secStargz, "stargz.ratio.pull", "lazyfs (defaults) / stargz, pull", "x", "%.3f", whenStargz(func(r runResult, s stargzResult) float64 { return r.Lazy.PullSeconds / s.Pull.PullSeconds })},
	{secStargz, "stargz.ratio.total", "lazyfs (defaults) / stargz, pull + run", "x", "%.3f", whenStargz(func(r runResult, s stargzResult) float64 { return r.Lazy.TotalSeconds / s.Pull.TotalSeconds })},
	{secStargz, "stargz.ratio.quiet_pull", "lazyfs (quiet) / stargz, pull", "x", "%.3f", whenStargz(func(r runResult, s stargzResult) float64 { return r.LazyQuiet.PullSeconds / s.Pull.PullSeconds })},
	{secStargz, "stargz.ratio.quiet_total", "lazyfs (quiet) / stargz, pull + run", "x", "%.3f", whenStargz(func(r runResult, s stargzResult) float64 { return r.LazyQuiet.TotalSeconds / s.Pull.TotalSeconds })},
	{secStargz, "stargz.ratio.registry_bytes", "lazyfs (quiet) / stargz, registry bytes of pull + run", "x", "%.3f", whenStargz(func(r runResult, s stargzResult) float64 {
		return float64(r.LazyQuiet.RegistryBytes) / float64(s.Pull.RegistryBytes)
	})},
	{secStargz, "stargz.ratio.cold_read", "stargz / lazyfs (quiet), cold 64 MiB read time", "x", "%.2f", whenStargz(func(r runResult, s stargzResult) float64 {
		return bigSeconds(s.Read.ColdMiBps) / bigSeconds(r.QuietRead.ColdMiBps)
	})},
	{secStargz, "stargz.ratio.small", "stargz / lazyfs (quiet), cold small files time", "x", "%.2f", whenStargz(func(r runResult, s stargzResult) float64 { return s.Small.Seconds / r.QuietSmall.Seconds })},

	{secMany, "many.pull_s", "lazy pull (TOC fetch + parse + mount)", "s", "%.3f", always(func(r runResult) float64 { return r.Many.PullSeconds })},
	{secMany, "many.registry_mib", "  registry bytes of the pull", "MiB", "%.2f", always(func(r runResult) float64 { return mibOf(r.Many.RegistryBytes) })},
	{secMany, "many.after_pull.vmrss_mib", "worker VmRSS after the pull", "MiB", "%.1f", whenLazy(func(m manyResult) float64 { return kibToMiB(m.AfterPull.VmRSSKiB) })},
	{secMany, "many.after_pull.vmhwm_mib", "worker VmHWM after the pull", "MiB", "%.1f", whenLazy(func(m manyResult) float64 { return kibToMiB(m.AfterPull.VmHWMKiB) })},
	{secMany, "many.after_pull.go_heap_inuse_mib", "  of which Go heap in use", "MiB", "%.1f", whenHeap(func(m manyResult) memStatus { return m.AfterPull })},
	{secMany, "many.walk_s", "walk of the tree, readdir + lstat of every entry", "s", "%.2f", whenLazy(func(m manyResult) float64 { return m.WalkSeconds })},
	{secMany, "many.entries", "  entries found", "", "%.0f", whenLazy(func(m manyResult) float64 { return float64(m.Entries) })},
	{secMany, "many.after_walk.vmrss_mib", "worker VmRSS after the walk", "MiB", "%.1f", whenLazy(func(m manyResult) float64 { return kibToMiB(m.AfterWalk.VmRSSKiB) })},
	{secMany, "many.after_walk.vmhwm_mib", "worker VmHWM after the walk", "MiB", "%.1f", whenLazy(func(m manyResult) float64 { return kibToMiB(m.AfterWalk.VmHWMKiB) })},
	{secMany, "many.after_walk.go_heap_inuse_mib", "  of which Go heap in use", "MiB", "%.1f", whenHeap(func(m manyResult) memStatus { return m.AfterWalk })},
}

// stat is the median and range of one metric over the runs; N is how many
// runs had a value.
type stat struct {
	Median, Min, Max float64
	N                int
}

func statOf(m metric, results []runResult) stat {
	var vals []float64
	for _, r := range results {
		if v, ok := m.value(r); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return stat{}
	}
	return stat{Median: median(vals), Min: slices.Min(vals), Max: slices.Max(vals), N: len(vals)}
}

// median of vals (not empty); the mean of the middle two for an even count.
func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report is the benchmark's output, printed as a table and written as JSON.
type report struct {
	Started  time.Time `json:"started"`
	Network  string    `json:"network"`
	Runs     int       `json:"runs"`
	Machine  machine   `json:"machine"`
	Notes    []string  `json:"notes"`
	Goal     goal      `json:"goal"`
	Findings []string  `json:"findings"`
	// Medians maps each metric's key to its median over the runs, null
	// when no run had a value.
	Medians map[string]*float64 `json:"medians"`
	Results []runResult         `json:"results"`
}

type machine struct {
	Kernel     string `json:"kernel"`
	CPUs       int    `json:"cpus"`
	Containerd string `json:"containerd"`
	Lazyfs     string `json:"lazyfs"`
}

// goal is the verdict on the worker's memory with the many-entry layer.
type goal struct {
	Description string `json:"description"`
	// MaxRSSMiB is the highest VmRSS sampled (after the pull, after the
	// walk) over all runs, PeakHWMMiB the highest VmHWM: the peak includes
	// the TOC load, which the samples come after. Met needs both under the
	// goal, and is false when a run refused the layer (nothing measured).
	MaxRSSMiB  float64 `json:"max_vmrss_mib"`
	PeakHWMMiB float64 `json:"peak_vmhwm_mib"`
	Met        bool    `json:"met"`
	Verdict    string  `json:"verdict"`
}

var notes = []string{
	"each run starts a fresh lazyfs-snapshotter and containerd (empty roots: no TOC, content or snapshot of an earlier run); the registry and its counting proxy are shared",
	"the page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches, as root) before every timed pull and every cold read, so registry blobs and unpacked files come from the VM's disk (which the host may cache: the overlayfs cold read varies most)",
	"runs alternate which pull goes first; ratios are computed per run, then the median is taken",
	"pull times include starting ctr; run is `ctr run --rm` of `true`",
}

func newReport(started time.Time, m machine, entries int, results []runResult) report {
	rep := report{Started: started, Runs: len(results), Machine: m, Notes: notes, Results: results, Medians: map[string]*float64{}}
	for _, mt := range metrics {
		if st := statOf(mt, results); st.N > 0 {
			v := st.Median
			rep.Medians[mt.key] = &v
		} else {
			rep.Medians[mt.key] = nil
		}
	}
	rep.Goal = judgeMemory(entries, results)
	rep.Findings = []string{}
	seen := map[string]bool{}
	for _, r := range results {
		for _, f := range r.Findings {
			if !seen[f] {
				seen[f] = true
				rep.Findings = append(rep.Findings, fmt.Sprintf("run %d: %s", r.Run, f))
			}
		}
	}
	return rep
}

func judgeMemory(entries int, results []runResult) goal {
	g := goal{Description: fmt.Sprintf("worker VmRSS and VmHWM under %d MiB with a %d-entry layer", goalMiB, entries)}
	for _, r := range results {
		if r.Many.Refused {
			g.Verdict = "NOT MEASURED: the worker refused the layer (see findings)"
			return g
		}
		m := r.Many
		g.MaxRSSMiB = max(g.MaxRSSMiB, kibToMiB(m.AfterPull.VmRSSKiB), kibToMiB(m.AfterWalk.VmRSSKiB))
		g.PeakHWMMiB = max(g.PeakHWMMiB, kibToMiB(m.AfterPull.VmHWMKiB), kibToMiB(m.AfterWalk.VmHWMKiB))
	}
	verdict := func(v float64) string {
		if v < goalMiB {
			return fmt.Sprintf("met (%.1f MiB)", v)
		}
		return fmt.Sprintf("NOT met (%.1f MiB)", v)
	}
	g.Met = g.MaxRSSMiB < goalMiB && g.PeakHWMMiB < goalMiB
	g.Verdict = fmt.Sprintf("%s; VmRSS after pull and walk, highest over the runs: %s; VmHWM, the peak including the TOC load: %s",
		map[bool]string{true: "MET", false: "NOT MET"}[g.Met], verdict(g.MaxRSSMiB), verdict(g.PeakHWMMiB))
	return g
}

// printTable writes the human-readable report.
func (rep report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nlazyfs benchmark, %s registry: %d run(s), %s, %d CPUs, kernel %s, containerd %s, lazyfs %s\n",
		rep.Network, rep.Runs, rep.Started.Format(time.RFC3339), rep.Machine.CPUs, rep.Machine.Kernel, rep.Machine.Containerd, rep.Machine.Lazyfs)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	width := 0
	for _, mt := range metrics {
		width = max(width, len(mt.label))
	}
	section := ""
	for _, mt := range metrics {
		if mt.section == secStargz && statOf(mt, rep.Results).N == 0 {
			continue // stargz was not measured (-stargz)
		}
		if mt.section != section {
			section = mt.section
			fmt.Fprintf(w, "\n%s\n   %-*s %10s %10s %10s\n", section, width, "", "median", "min", "max")
		}
		st := statOf(mt, rep.Results)
		if st.N == 0 {
			fmt.Fprintf(w, "   %-*s %10s %10s %10s  %s\n", width, mt.label, "n/a", "", "", mt.unit)
			continue
		}
		fmt.Fprintf(w, "   %-*s %10s %10s %10s  %s\n", width, mt.label,
			fmt.Sprintf(mt.format, st.Median), fmt.Sprintf(mt.format, st.Min), fmt.Sprintf(mt.format, st.Max), mt.unit)
	}
	fmt.Fprintf(w, "\ngoal (%s): %s\n", rep.Goal.Description, rep.Goal.Verdict)
	if len(rep.Findings) == 0 {
		fmt.Fprintf(w, "findings: none (no fallback, no error in the snapshotter and worker logs)\n")
		return
	}
	fmt.Fprintf(w, "findings:\n")
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "  - %s\n", strings.ReplaceAll(f, "\n", "\n    "))
	}
}

func (rep report) writeJSON(path string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode the report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}
