package supervisor

import (
	"bytes"
	"fmt"
	"slices"
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

// TestMetricsStoreSumsEveryCumulativeValue: across processes of one id a
// histogram's sum and a summary's count and sum add up (its quantiles are
// the newest process's), and a series whose type changed (a worker of
// another version) shows the new process's values alone.
func TestMetricsStoreSumsEveryCumulativeValue(t *testing.T) {
	page := func(sum, count, q50 float64, changed string) string {
		return fmt.Sprintf(`# TYPE lazyfs_op_seconds histogram
lazyfs_op_seconds_bucket{le="+Inf"} %[2]v
lazyfs_op_seconds_sum %[1]v
lazyfs_op_seconds_count %[2]v
# TYPE lazyfs_fetch_seconds summary
lazyfs_fetch_seconds{quantile="0.5"} %[3]v
lazyfs_fetch_seconds_sum %[1]v
lazyfs_fetch_seconds_count %[2]v
%[4]s`, sum, count, q50, changed)
	}
	st := newMetricsStore()
	st.update("w", processKey{pid: 1, startTime: 1}, parsePage(t, page(1.5, 3, 0.2, "# TYPE lazyfs_changed counter\nlazyfs_changed 10\n")))
	st.update("w", processKey{pid: 2, startTime: 2}, parsePage(t, page(2.25, 4, 0.7, "# TYPE lazyfs_changed gauge\nlazyfs_changed 3\n")))
	fams := map[string]*dto.MetricFamily{}
	for _, f := range st.gather(map[string]bool{"w": true}) {
		fams[f.GetName()] = f
	}
	h := fams["lazyfs_op_seconds"].Metric[0].Histogram
	if h.GetSampleCount() != 7 || h.GetSampleSum() != 3.75 {
		t.Errorf("histogram over two processes: count %d, sum %v; want 7 and 3.75", h.GetSampleCount(), h.GetSampleSum())
	}
	s := fams["lazyfs_fetch_seconds"].Metric[0].Summary
	if s.GetSampleCount() != 7 || s.GetSampleSum() != 3.75 || len(s.Quantile) != 1 || s.Quantile[0].GetValue() != 0.7 {
		t.Errorf("summary over two processes: %v; want count 7, sum 3.75 and the newest median 0.7", s)
	}
	c := fams["lazyfs_changed"]
	if c.GetType() != dto.MetricType_GAUGE || len(c.Metric) != 1 || c.Metric[0].GetGauge().GetValue() != 3 {
		t.Errorf("a series that became a gauge: %v; want the new process's gauge 3 alone", c)
	}
}

// TestMetricsPageOrder: the page lists each family's series in the order
// of their labels, worker_id among them in its place by name, so that two
// scrapes of the same values read the same.
func TestMetricsPageOrder(t *testing.T) {
	st := newMetricsStore()
	for i, id := range []string{"c", "a", "b"} {
		st.update(id, processKey{pid: i + 1}, parsePage(t, "# TYPE lazyfs_x_total counter\n"+
			`lazyfs_x_total{zone="z",alpha="a"} 1`+"\n"))
	}
	fams := st.gather(map[string]bool{"a": true, "b": true, "c": true})
	if len(fams) != 1 {
		t.Fatalf("families: %v", fams)
	}
	var got []string
	for _, m := range fams[0].Metric {
		var names []string
		for _, lp := range m.Label {
			names = append(names, lp.GetName())
		}
		if want := []string{"alpha", workerIDLabel, "zone"}; !slices.Equal(names, want) {
			t.Errorf("labels %v, want %v (sorted by name)", names, want)
		}
		for _, lp := range m.Label {
			if lp.GetName() == workerIDLabel {
				got = append(got, lp.GetValue())
			}
		}
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("series by worker %v, want %v", got, want)
	}
}
