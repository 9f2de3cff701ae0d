package snapshot

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/metrics"
)

// TestMissingLabelsReason guards the tell between an ordinary layer and an
// eStargz layer whose labels containerd did not send: only the latter is
// counted (and warned about) as missing_labels, naming what is missing.
func TestMissingLabelsReason(t *testing.T) {
	ctx := testContext(t)
	s, err := New(ctx, t.TempDir(), WithRemoteLayers(newFakeRemote()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	noLabels := map[string]string{
		labels.TargetSnapshotRef: "c1",
		labels.TOCDigest:         "sha256:3333333333333333333333333333333333333333333333333333333333333333",
	}
	ordinary := map[string]string{labels.TargetSnapshotRef: "c2"}
	malformed := lazyLabels("c3")
	malformed[labels.LayerDigest] = "sha256:12"

	for _, tc := range []struct {
		name, key, reason string
		labels            map[string]string
	}{
		{"estargz without labels", "extract-1 c1", reasonMissingLabels, noLabels},
		{"ordinary layer", "extract-2 c2", reasonNotEstargz, ordinary},
		{"malformed label", "extract-3 c3", reasonMalformedLabels, malformed},
	} {
		before := testutil.ToFloat64(metrics.Fallbacks.WithLabelValues(tc.reason))
		if _, err := s.Prepare(ctx, tc.key, "", snapshots.WithLabels(tc.labels)); err != nil {
			t.Fatalf("%s: Prepare: %v", tc.name, err)
		}
		if got := testutil.ToFloat64(metrics.Fallbacks.WithLabelValues(tc.reason)) - before; got != 1 {
			t.Errorf("%s: fallbacks{reason=%q} grew by %v, want 1", tc.name, tc.reason, got)
		}
	}

	if got := missingLabels(noLabels); len(got) != 2 || got[0] != labels.ImageRef || got[1] != labels.LayerDigest {
		t.Errorf("missingLabels = %q, want the image ref and layer digest labels", got)
	}
	if got := missingLabels(ordinary); got != nil {
		t.Errorf("missingLabels of a layer without TOC digest = %q, want none", got)
	}
	if got := missingLabels(lazyLabels("c")); got != nil {
		t.Errorf("missingLabels of a complete layer = %q, want none", got)
	}
}

// TestMissingLabelsWarnedOnce: the first eStargz layer without its labels
// is a warning naming the missing labels and the containerd keys; later
// ones are not (a pull of many layers must not flood the log), and an
// ordinary layer never is.
func TestMissingLabelsWarnedOnce(t *testing.T) {
	var buf bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&buf)
	logger.SetLevel(logrus.InfoLevel)
	ctx := log.WithLogger(testContext(t), logrus.NewEntry(logger))
	s, err := New(ctx, t.TempDir(), WithRemoteLayers(newFakeRemote()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		l := map[string]string{
			labels.TargetSnapshotRef: fmt.Sprintf("c%d", i),
			labels.TOCDigest:         "sha256:3333333333333333333333333333333333333333333333333333333333333333",
		}
		if _, err := s.Prepare(ctx, fmt.Sprintf("extract-%d", i), "", snapshots.WithLabels(l)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Prepare(ctx, "extract-plain", "", snapshots.WithLabels(map[string]string{labels.TargetSnapshotRef: "p"})); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "eStargz layer without the labels"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"level=warning", labels.ImageRef, "enable_remote_snapshot_annotations", "disable_snapshot_annotations"} {
		if !strings.Contains(out, want) {
			t.Errorf("the warning lacks %q:\n%s", want, out)
		}
	}
}
