package chaos

import (
	"fmt"
	"slices"
	"time"
)

// Kill is one worker kill as the test saw it: when the signal was sent and
// when the worker's id was first seen served by its successor.
type Kill struct {
	Worker string
	Signal string
	At     time.Time
	Served time.Time
}

// Dist summarises a set of durations.
type Dist struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

func (d Dist) String() string {
	if d.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d median %v p99 %v max %v", d.N, round(d.Median), round(d.P99), round(d.Max))
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// NewDist summarises ds (nearest-rank percentiles).
func NewDist(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Dist{N: len(s), Median: rank(0.5), P99: rank(0.99), Max: s[len(s)-1]}
}

// StallReport is what the readers saw around the kills.
type StallReport struct {
	// Baseline is the latency of ops far from any kill or snapshotter
	// restart, measured in the same run.
	Baseline Dist `json:"baseline"`
	// InWindows is the latency of every op that overlapped a kill window
	// (from the kill to Margin after the successor was seen serving).
	InWindows Dist `json:"in_kill_windows"`
	// PerKill is, per kill and reader, the longest op overlapping the
	// kill window: the stall that reader saw across that kill.
	PerKill Dist `json:"stall_per_kill"`
	// DeathToServing is, per kill, the time from the signal to the test
	// seeing the successor serve (bounded below by its polling interval).
	DeathToServing Dist `json:"death_to_serving"`
	// Stalls are the values PerKill summarises.
	Stalls []time.Duration `json:"-"`
	// Slowest lists the longest ops in kill windows, for the report.
	Slowest []OpRecord `json:"-"`
}

// window is a span of time; windows are kept sorted by from.
type window struct{ from, to time.Time }

// windowSet finds the windows an op overlaps without scanning them all (a
// long run has a thousand kills and millions of ops).
type windowSet struct {
	ws     []window
	maxLen time.Duration
}

func newWindowSet(ws []window) windowSet {
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b window) int { return a.from.Compare(b.from) })
	var maxLen time.Duration
	for _, w := range ws {
		maxLen = max(maxLen, w.to.Sub(w.from))
	}
	return windowSet{ws: ws, maxLen: maxLen}
}

// each calls fn with the index of every window r overlaps.
func (s windowSet) each(r OpRecord, fn func(i int)) {
	end := r.End()
	// The first window starting after the op ended, then back.
	i, _ := slices.BinarySearchFunc(s.ws, end, func(w window, t time.Time) int {
		if w.from.After(t) {
			return 1
		}
		return -1
	})
	earliest := r.Start.Add(-s.maxLen)
	for i--; i >= 0 && !s.ws[i].from.Before(earliest); i-- {
		if !s.ws[i].to.Before(r.Start) {
			fn(i)
		}
	}
}

// Analyze relates the readers' op logs to kills. quiet are further windows
// (snapshotter restarts) left out of the baseline; margin extends every
// window past the moment the successor was seen serving (and, for the
// baseline, before the kill).
func Analyze(readers [][]OpRecord, kills []Kill, quiet [][2]time.Time, margin time.Duration) StallReport {
	var kw, near []window
	var d2s []time.Duration
	for _, k := range kills {
		kw = append(kw, window{k.At, k.Served.Add(margin)})
		near = append(near, window{k.At.Add(-margin), k.Served.Add(margin)})
		d2s = append(d2s, k.Served.Sub(k.At))
	}
	for _, q := range quiet {
		near = append(near, window{q[0].Add(-margin), q[1].Add(margin)})
	}
	kills2, nearSet := newWindowSet(kw), newWindowSet(near)
	var base, in, perKill []time.Duration
	var inRecs []OpRecord
	for _, ops := range readers {
		longest := make([]time.Duration, len(kills2.ws))
		seen := make([]bool, len(kills2.ws))
		for _, r := range ops {
			inAny := false
			kills2.each(r, func(i int) {
				inAny = true
				seen[i] = true
				longest[i] = max(longest[i], r.Duration)
			})
			if inAny {
				in = append(in, r.Duration)
				inRecs = append(inRecs, r)
				continue
			}
			isNear := false
			nearSet.each(r, func(int) { isNear = true })
			if !isNear {
				base = append(base, r.Duration)
			}
		}
		for i := range kills2.ws {
			if seen[i] {
				perKill = append(perKill, longest[i])
			}
		}
	}
	slices.SortFunc(inRecs, func(a, b OpRecord) int { return int(b.Duration - a.Duration) })
	if len(inRecs) > 5 {
		inRecs = inRecs[:5]
	}
	return StallReport{
		Baseline:       NewDist(base),
		InWindows:      NewDist(in),
		PerKill:        NewDist(perKill),
		Stalls:         perKill,
		DeathToServing: NewDist(d2s),
		Slowest:        inRecs,
	}
}
