package supervisor

import (
	"slices"
	"sort"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// workerIDLabel labels each worker's series on the snapshotter's /metrics:
// the field name the logs use for the same thing.
const workerIDLabel = "worker_id"

// processKey tells two processes of one worker id apart: a pid alone may
// be reused by a later process.
type processKey struct {
	pid       int
	startTime uint64
}

// metricsStore keeps, per worker id, the series last scraped from its
// worker, so that they outlive the process: a worker that exits (idle,
// stopped, crashed) still shows what it did. When a new process takes over
// an id, the cumulative series (counters, histogram and summary counts and
// sums) of the earlier processes are kept as a base that the new process's
// values are added to, so that a total never goes backwards. Gauges describe
// a running process and are dropped once it is gone.
//
// The store lives as long as the snapshotter: a restarted snapshotter starts
// from the values of the workers it re-adopts.
type metricsStore struct {
	mu      sync.Mutex
	workers map[string]*workerSeries
}

type workerSeries struct {
	// scrapeMu serializes the scrapes of one worker id, so that an older
	// scrape never lands after, and overwrites, a newer one.
	scrapeMu sync.Mutex

	// Guarded by metricsStore.mu.
	proc    processKey
	current map[string]*dto.MetricFamily // last scrape of proc, as the worker served it
	base    map[string]*dto.MetricFamily // cumulative series of earlier processes, summed
}

func newMetricsStore() *metricsStore {
	return &metricsStore{workers: map[string]*workerSeries{}}
}

// series returns the entry of a worker id, creating it.
func (st *metricsStore) series(id string) *workerSeries {
	st.mu.Lock()
	defer st.mu.Unlock()
	ws, ok := st.workers[id]
	if !ok {
		ws = &workerSeries{base: map[string]*dto.MetricFamily{}}
		st.workers[id] = ws
	}
	return ws
}

// update stores a scrape of process proc of worker id.
func (st *metricsStore) update(id string, proc processKey, families map[string]*dto.MetricFamily) {
	ws := st.series(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	if ws.current != nil && ws.proc != proc {
		for _, fam := range ws.current {
			if cumulative(fam.GetType()) {
				addFamily(ws.base, fam)
			}
		}
	}
	ws.proc = proc
	ws.current = families
}

// gather returns every worker's series labelled with its id, summed over
// the processes of that id; live says which ids have a running process.
func (st *metricsStore) gather(live map[string]bool) []*dto.MetricFamily {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := map[string]*dto.MetricFamily{}
	for id, ws := range st.workers {
		merged := map[string]*dto.MetricFamily{}
		for _, fam := range ws.base {
			addFamily(merged, fam)
		}
		for _, fam := range ws.current {
			if live[id] || cumulative(fam.GetType()) {
				addFamily(merged, fam)
			}
		}
		for name, fam := range merged {
			for _, m := range fam.Metric {
				m.Label = withLabel(m.Label, workerIDLabel, id)
			}
			if o, ok := out[name]; ok && o.GetType() == fam.GetType() {
				o.Metric = append(o.Metric, fam.Metric...)
			} else if !ok {
				out[name] = fam
			}
		}
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	fams := make([]*dto.MetricFamily, 0, len(names))
	for _, name := range names {
		fam := out[name]
		// Workers come from a map: sorted, the page is the same each time.
		sort.Slice(fam.Metric, func(i, j int) bool { return labelKey(fam.Metric[i].Label) < labelKey(fam.Metric[j].Label) })
		fams = append(fams, fam)
	}
	return fams
}

// cumulative reports whether a series of type t only grows over a
// process's life, so that its values of successive processes add up.
func cumulative(t dto.MetricType) bool {
	switch t {
	case dto.MetricType_COUNTER, dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
		return true
	}
	return false
}

// addFamily adds src's series into dst (by name, then by label set):
// cumulative values are summed, gauges and untyped values replaced. src is
// never modified; what dst keeps are copies.
func addFamily(dst map[string]*dto.MetricFamily, src *dto.MetricFamily) {
	d, ok := dst[src.GetName()]
	if !ok {
		d = &dto.MetricFamily{Name: src.Name, Help: src.Help, Type: src.Type, Unit: src.Unit}
		dst[src.GetName()] = d
	}
	if d.GetType() != src.GetType() {
		// A worker of another version changed the series' type: the old
		// values cannot be added to the new ones.
		d.Type, d.Metric = src.Type, nil
	}
	d.Help = src.Help
	for _, m := range src.Metric {
		key := labelKey(m.Label)
		i := slices.IndexFunc(d.Metric, func(x *dto.Metric) bool { return labelKey(x.Label) == key })
		if i < 0 || !cumulative(d.GetType()) {
			c := proto.Clone(m).(*dto.Metric)
			c.TimestampMs = nil
			if i < 0 {
				d.Metric = append(d.Metric, c)
			} else {
				d.Metric[i] = c
			}
			continue
		}
		addMetric(d.Metric[i], m)
	}
}

// addMetric adds the cumulative values of src to dst. A summary's quantiles
// cannot be added: dst takes src's, which describe the newest process.
func addMetric(dst, src *dto.Metric) {
	switch {
	case dst.Counter != nil && src.Counter != nil:
		dst.Counter.Value = proto.Float64(dst.Counter.GetValue() + src.Counter.GetValue())
	case dst.Histogram != nil && src.Histogram != nil:
		h, s := dst.Histogram, src.Histogram
		h.SampleCount = proto.Uint64(h.GetSampleCount() + s.GetSampleCount())
		h.SampleSum = proto.Float64(h.GetSampleSum() + s.GetSampleSum())
		for _, sb := range s.Bucket {
			for _, hb := range h.Bucket {
				if hb.GetUpperBound() == sb.GetUpperBound() {
					hb.CumulativeCount = proto.Uint64(hb.GetCumulativeCount() + sb.GetCumulativeCount())
				}
			}
		}
	case dst.Summary != nil && src.Summary != nil:
		q := make([]*dto.Quantile, 0, len(src.Summary.Quantile))
		for _, x := range src.Summary.Quantile {
			q = append(q, proto.Clone(x).(*dto.Quantile))
		}
		dst.Summary.SampleCount = proto.Uint64(dst.Summary.GetSampleCount() + src.Summary.GetSampleCount())
		dst.Summary.SampleSum = proto.Float64(dst.Summary.GetSampleSum() + src.Summary.GetSampleSum())
		dst.Summary.Quantile = q
	}
}

// labelKey identifies a series within its family.
func labelKey(lps []*dto.LabelPair) string {
	pairs := make([]string, 0, len(lps))
	for _, lp := range lps {
		pairs = append(pairs, lp.GetName()+"\xff"+lp.GetValue())
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "\xfe")
}

// withLabel returns lps with name=value set, sorted by name as the
// exposition expects.
func withLabel(lps []*dto.LabelPair, name, value string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(lps)+1)
	for _, lp := range lps {
		if lp.GetName() != name {
			out = append(out, lp)
		}
	}
	out = append(out, &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)})
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}
