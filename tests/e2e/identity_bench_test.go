package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// identityBenchRunsEnv sets how many runs BenchmarkVerifyModes makes of each
// setting (default 5); the report gives medians.
const identityBenchRunsEnv = "LAZYFS_IDENTITY_BENCH_RUNS"

// BenchmarkVerifyModes is `make bench-identity`: what each [layers] verify
// setting costs in a pull + first command (`ctr run --rm … true`) of the
// eStargz test image, cold (a fresh stack per run), against the baseline
// measured in the same run: a full pull of the original image with
// containerd's overlayfs snapshotter. Also reported: how long after the
// pull every layer is proven (background proofs), i.e. until the image is
// fully cached. A single image contests no layer, so "before-share" never
// waits here; "before-use" waits for the proof of every layer before the
// first command.
func BenchmarkVerifyModes(b *testing.B) {
	runs := 5
	if v := os.Getenv(identityBenchRunsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a number of runs >= 1", identityBenchRunsEnv, v)
		}
		runs = n
	}
	settings := []struct {
		name   string
		config map[string]any // nil: the baseline, overlayfs
	}{
		{"overlayfs full pull (baseline)", nil},
		{"lazyfs, proofs off", proofsOff},
		{"lazyfs, verify=background", map[string]any{"layers": map[string]any{"verify": "background"}}},
		{"lazyfs, verify=before-share (default)", map[string]any{"layers": map[string]any{"verify": "before-share"}}},
		{"lazyfs, verify=before-use", map[string]any{"layers": map[string]any{"verify": "before-use"}}},
	}
	for b.Loop() {
		totals := make([][]time.Duration, len(settings))
		proven := make([][]time.Duration, len(settings))
		for run := range runs {
			// The settings in another order each run, so that none
			// is always measured on a warmer machine.
			for k := range settings {
				i := (k + run) % len(settings)
				total, prove := benchPullAndRun(b, settings[i].config, fmt.Sprintf("bench-%d-%d", run, i))
				totals[i] = append(totals[i], total)
				if prove > 0 {
					proven[i] = append(proven[i], prove)
				}
			}
		}
		base := median(totals[0])
		b.Logf("pull + first command of the test image, median of %d cold runs each (loopback registry):", runs)
		for i, st := range settings {
			m := median(totals[i])
			line := fmt.Sprintf("  %-40s %8.0f ms  (%.2fx the baseline)", st.name, ms(m), float64(m)/float64(base))
			if len(proven[i]) > 0 {
				line += fmt.Sprintf("; every layer proven (and cached) %.0f ms after the pull began", ms(median(proven[i])))
			}
			b.Log(line)
			b.ReportMetric(ms(m), fmt.Sprintf("setting%d-ms", i))
		}
	}
}

// benchPullAndRun starts a fresh stack with the snapshotter config given
// (nil: the baseline, a full pull with overlayfs), converts the test image
// outside the timing, and times pull + first command. It returns that time
// and, for lazyfs with background proofs, when every layer was proven.
func benchPullAndRun(b *testing.B, config map[string]any, id string) (total, proven time.Duration) {
	b.Helper()
	s := startStackWith(b, harness.V2, harness.SnapshotterOptions{Env: env, Config: config})
	ref, snapshotter := s.ref, "overlayfs"
	var layers int
	if config != nil {
		img := s.convertToEStargz(b, "")
		ref, snapshotter, layers = img.ref, "lazyfs", len(img.layers)
	}
	ctx := context.Background()
	start := time.Now()
	if _, err := s.ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", snapshotter, ref); err != nil {
		b.Fatal(err)
	}
	if _, err := s.ctrd.CtrRun(ctx, "--rm", "--snapshotter", snapshotter, ref, id, "true"); err != nil {
		b.Fatal(err)
	}
	total = time.Since(start)
	if config == nil || config["layers"].(map[string]any)["proof_concurrency"] == 0 {
		return total, 0
	}
	waitFor(b, 5*time.Minute, "every layer proven", func() (bool, string) {
		page := httpGet(b, "http://"+s.snap.DebugAddr()+"/metrics")
		n, _ := metricValue(b, page, "lazyfs_layer_proofs_total", map[string]string{"result": "verified"})
		return int(n) == layers, fmt.Sprintf("%v of %d layers proven", n, layers)
	})
	return total, time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
