package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeTimeout bounds one scrape of a worker's /metrics: a worker that
// does not answer must not hold up the snapshotter's /metrics page, which
// then shows that worker's last scraped values.
const scrapeTimeout = 2 * time.Second

// WorkerMetrics returns the workers' series for the snapshotter's /metrics
// (DESIGN.md: every worker's series, labelled worker_id). Each Gather
// scrapes every running worker's GET /metrics over its API socket and
// returns the series of every worker this supervisor has seen, including
// those that exited (see metricsStore). Serve it next to the snapshotter's
// own registry, e.g. with prometheus.Gatherers.
func (s *Supervisor) WorkerMetrics() prometheus.Gatherer {
	return workerGatherer{s}
}

type workerGatherer struct{ s *Supervisor }

// Gather never fails: a worker that cannot be scraped is logged and keeps
// its last values.
func (g workerGatherer) Gather() ([]*dto.MetricFamily, error) {
	s := g.s
	s.mu.Lock()
	workers := make([]*worker, 0, len(s.workers))
	live := map[string]bool{}
	for id, w := range s.workers {
		workers = append(workers, w)
		live[id] = true
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { s.scrapeWorker(s.ctx, w) })
	}
	wg.Wait()
	return s.metrics.gather(live), nil
}

// scrapeWorker stores the current values of w's series. The supervisor
// calls it once more right before a worker stops (stopWorker, or the
// detach of its last mount, after which a per-image worker exits), so that
// what the worker did last is not lost with it.
func (s *Supervisor) scrapeWorker(ctx context.Context, w *worker) {
	ws := s.metrics.series(w.id)
	ws.scrapeMu.Lock()
	defer ws.scrapeMu.Unlock()
	select {
	case <-w.exited:
		return // its last scrape is what there is
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	families, err := scrape(ctx, w)
	if err != nil {
		select {
		case <-w.exited:
			return // exited while scraped: not a problem of the worker
		default:
		}
		log.G(ctx).WithError(err).WithField("worker_id", w.id).Warn("failed to scrape worker metrics; keeping its last values")
		return
	}
	s.metrics.update(w.id, processKey{pid: w.pid, startTime: w.startTime}, families)
}

func scrape(ctx context.Context, w *worker) (map[string]*dto.MetricFamily, error) {
	page, err := w.api.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return nil, fmt.Errorf("worker %s: metrics page does not parse: %w", w.id, err)
	}
	return families, nil
}
