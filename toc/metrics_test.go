package toc_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/toc"
)

func sampleCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func TestFetchRecordsDurations(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	fetches, parses := sampleCount(t, metrics.TOCFetchDuration), sampleCount(t, metrics.TOCParseDuration)
	if _, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if got := sampleCount(t, metrics.TOCFetchDuration); got != fetches+1 {
		t.Errorf("TOCFetchDuration has %d samples, want %d", got, fetches+1)
	}
	if got := sampleCount(t, metrics.TOCParseDuration); got != parses+1 {
		t.Errorf("TOCParseDuration has %d samples, want %d", got, parses+1)
	}
}
