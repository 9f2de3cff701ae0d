package supervisor

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parsePage(t *testing.T, page string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// workerPage is what a worker serves: a counter with labels, one without,
// a gauge and a histogram.
func workerPage(fetches, readsA, goroutines, hCount, hLow int) string {
	var b strings.Builder
	w := func(format string, args ...any) {
		b.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	w("# HELP lazyfs_chunk_fetches_total Chunks fetched.")
	w("# TYPE lazyfs_chunk_fetches_total counter")
	w("lazyfs_chunk_fetches_total %d", fetches)
	w("# HELP lazyfs_fuse_op_failures_total Failures.")
	w("# TYPE lazyfs_fuse_op_failures_total counter")
	w(`lazyfs_fuse_op_failures_total{op="read"} %d`, readsA)
	w("# HELP go_goroutines Goroutines.")
	w("# TYPE go_goroutines gauge")
	w("go_goroutines %d", goroutines)
	w("# HELP lazyfs_op_seconds Op latency.")
	w("# TYPE lazyfs_op_seconds histogram")
	w(`lazyfs_op_seconds_bucket{le="0.1"} %d`, hLow)
	w(`lazyfs_op_seconds_bucket{le="+Inf"} %d`, hCount)
	w("lazyfs_op_seconds_sum %d", hCount)
	w("lazyfs_op_seconds_count %d", hCount)
	return b.String()
}

// valueOf returns the value of name{worker_id=id,extra...} in fams, and
// whether it is there.
func valueOf(fams []*dto.MetricFamily, name, id string, extra ...string) (float64, bool) {
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, lp := range m.Label {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels[workerIDLabel] != id {
				continue
			}
			match := true
			for i := 0; i+1 < len(extra); i += 2 {
				if labels[extra[i]] != extra[i+1] {
					match = false
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestMetricsStore(t *testing.T) {
	st := newMetricsStore()
	p1 := processKey{pid: 100, startTime: 1}
	p2 := processKey{pid: 200, startTime: 2}
	live := map[string]bool{"w1": true, "w2": true}

	st.update("w1", p1, parsePage(t, workerPage(5, 1, 10, 3, 2)))
	st.update("w2", p1, parsePage(t, workerPage(7, 0, 20, 1, 1)))
	fams := st.gather(live)
	for _, c := range []struct {
		name, id string
		want     float64
		extra    []string
	}{
		{"lazyfs_chunk_fetches_total", "w1", 5, nil},
		{"lazyfs_chunk_fetches_total", "w2", 7, nil},
		{"lazyfs_fuse_op_failures_total", "w1", 1, []string{"op", "read"}},
		{"go_goroutines", "w2", 20, nil},
		{"lazyfs_op_seconds", "w1", 3, nil},
	} {
		if got, ok := valueOf(fams, c.name, c.id, c.extra...); !ok || got != c.want {
			t.Errorf("%s{worker_id=%q} = %v (present %v), want %v", c.name, c.id, got, ok, c.want)
		}
	}

	// A newer scrape of the same process replaces the values.
	st.update("w1", p1, parsePage(t, workerPage(6, 1, 11, 4, 2)))
	// w2 exits: its counters stay, its gauge goes.
	fams = st.gather(map[string]bool{"w1": true})
	if got, _ := valueOf(fams, "lazyfs_chunk_fetches_total", "w1"); got != 6 {
		t.Errorf("w1 after a newer scrape: %v, want 6", got)
	}
	if got, ok := valueOf(fams, "lazyfs_chunk_fetches_total", "w2"); !ok || got != 7 {
		t.Errorf("w2 after its exit: %v (present %v), want 7", got, ok)
	}
	if _, ok := valueOf(fams, "go_goroutines", "w2"); ok {
		t.Error("w2's gauge is still shown after its exit")
	}

	// A new process takes over w1: its counters add to the old ones, its
	// gauge is its own.
	st.update("w1", p2, parsePage(t, workerPage(2, 0, 4, 1, 1)))
	fams = st.gather(live)
	for _, c := range []struct {
		name  string
		want  float64
		extra []string
	}{
		{"lazyfs_chunk_fetches_total", 8, nil},
		{"lazyfs_fuse_op_failures_total", 1, []string{"op", "read"}},
		{"go_goroutines", 4, nil},
		{"lazyfs_op_seconds", 5, nil},
	} {
		if got, ok := valueOf(fams, c.name, "w1", c.extra...); !ok || got != c.want {
			t.Errorf("after a new process: %s{worker_id=w1} = %v (present %v), want %v", c.name, got, ok, c.want)
		}
	}
	for _, f := range fams {
		if f.GetName() != "lazyfs_op_seconds" {
			continue
		}
		for _, m := range f.Metric {
			if m.Label[0].GetValue() == "w1" && m.Histogram.Bucket[0].GetCumulativeCount() != 3 {
				t.Errorf("histogram bucket le=0.1 of w1 = %d, want 3", m.Histogram.Bucket[0].GetCumulativeCount())
			}
		}
	}

	// Gathering twice gives the same page: the base is never added twice.
	var a, b bytes.Buffer
	for _, f := range st.gather(live) {
		expfmt.MetricFamilyToText(&a, f)
	}
	for _, f := range st.gather(live) {
		expfmt.MetricFamilyToText(&b, f)
	}
	if a.String() != b.String() {
		t.Errorf("two gathers differ:\n%s\n---\n%s", a.String(), b.String())
	}
}
