package main

import (
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals []float64
		want float64
	}{
		{"one", []float64{3}, 3},
		{"odd, unsorted", []float64{5, 1, 3}, 3},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.vals); got != tc.want {
				t.Fatalf("median(%v) = %v, want %v", tc.vals, got, tc.want)
			}
		})
	}
}

func mibResult(run int, hwmMiB int64, refused bool) runResult {
	r := runResult{Run: run}
	r.Lazy.TotalSeconds, r.Full.TotalSeconds = 1, 2
	r.Many.Refused = refused
	if !refused {
		r.Many.AfterPull = memStatus{VmRSSKiB: hwmMiB << 10, VmHWMKiB: hwmMiB << 10}
		r.Many.AfterWalk = r.Many.AfterPull
	}
	return r
}

func TestNewReportGoal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results []runResult
		met     bool
		verdict string
	}{
		{"under the goal", []runResult{mibResult(1, 120, false), mibResult(2, 150, false)}, true, "MET; VmRSS after pull and walk, highest over the runs: met (150.0 MiB)"},
		{"one run over", []runResult{mibResult(1, 120, false), mibResult(2, 250, false)}, false, "NOT MET; VmRSS after pull and walk, highest over the runs: NOT met (250.0 MiB)"},
		{"a refused layer is not a success", []runResult{mibResult(1, 0, true), mibResult(2, 100, false)}, false, "NOT MEASURED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := newReport(time.Now(), machine{}, 300_000, tc.results)
			if rep.Goal.Met != tc.met || !strings.HasPrefix(rep.Goal.Verdict, tc.verdict) {
				t.Fatalf("goal = %+v, want met=%v and a verdict starting %q", rep.Goal, tc.met, tc.verdict)
			}
		})
	}
}

func TestNewReportMedians(t *testing.T) {
	rep := newReport(time.Now(), machine{}, 300_000, []runResult{mibResult(1, 0, true), mibResult(2, 100, false), mibResult(3, 140, false)})
	if v := rep.Medians["pull.ratio_time"]; v == nil || *v != 0.5 {
		t.Fatalf("pull.ratio_time = %v, want 0.5", v)
	}
	// The refused run has no worker: the median is over the other two.
	if v := rep.Medians["many.after_pull.vmrss_mib"]; v == nil || *v != 120 {
		t.Fatalf("many.after_pull.vmrss_mib = %v, want 120", v)
	}
	var out strings.Builder
	rep.printTable(&out)
	if !strings.Contains(out.String(), "worker VmRSS after the pull") {
		t.Fatalf("table lacks the worker memory row:\n%s", out.String())
	}
}

// A worker whose resident set is small after the TOC load but peaked above
// the goal during it does not meet the goal.
func TestJudgeMemoryPeak(t *testing.T) {
	r := mibResult(1, 120, false)
	r.Many.AfterPull.VmHWMKiB = 340 << 10
	g := judgeMemory(300_000, []runResult{r})
	if g.Met || g.MaxRSSMiB != 120 || g.PeakHWMMiB != 340 {
		t.Fatalf("goal = %+v, want not met with VmRSS 120 and VmHWM 340", g)
	}
}
