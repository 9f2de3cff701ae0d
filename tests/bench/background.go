package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// The background-fetch scenario (-background): issue 11's point 4. A lazily
// pulled layer is fetched whole in the background (its proof, which stores
// every verified chunk in the disk cache), paced by [fetch] background_rate
// and yielding to reads a container waits on. Each run measures, on two
// fresh stacks in alternating order:
//
//   - the cold read of the 64 MiB file right after a lazy pull + first
//     command, with background fetch on (the defaults) and off
//     ([layers] proof_concurrency = 0): the read must not be much slower
//     with it on (issue 11: at most 1.2 ×);
//   - on the stack with it on, the time from the start of the lazy pull
//     until every layer of the image is proven and so fully cached (the
//     cold read happens meanwhile), against a full pull of the original
//     image with overlayfs on the stack with it off (where no background
//     work competes).

// bgResult is one run of the background-fetch scenario.
type bgResult struct {
	Run     int        `json:"run"`
	OnFirst bool       `json:"on_first"`
	OnPull  pullResult `json:"on_lazy_pull"`
	OnRead  readResult `json:"on_cold_read"`
	OffPull pullResult `json:"off_lazy_pull"`
	OffRead readResult `json:"off_cold_read"`
	// ProvenBeforeRead and ProvenAfterRead count the layers proven
	// (fully fetched) when the cold read with background fetch on began
	// and ended: all proven before it began means nothing competed.
	ProvenBeforeRead int `json:"proven_before_read"`
	ProvenAfterRead  int `json:"proven_after_read"`
	Layers           int `json:"layers"`
	// FullyCachedSeconds is from the start of the lazy pull until every
	// layer was proven; FullPullSeconds the overlayfs pull of the original.
	FullyCachedSeconds float64    `json:"fully_cached_seconds"`
	Full               pullResult `json:"full_pull"`
}

// backgroundConfig is the config of each side: on is the defaults (plus
// the rate asked for), off turns the background proofs, and so the
// background fetch, off.
func backgroundConfig(on bool, rate string) map[string]any {
	if !on {
		return map[string]any{"layers": map[string]any{"proof_concurrency": 0}}
	}
	return map[string]any{"fetch": map[string]any{"background_rate": rate}}
}

// runBackground measures one run of the scenario.
func runBackground(ctx context.Context, env harness.Env, proxy *harness.Proxy, imgs benchImages, dir, logsDir, rate string, n, of int) (r bgResult, err error) {
	r = bgResult{Run: n, OnFirst: n%2 == 1}
	lazyRef := ref(proxy.Addr(), appRepo, lazyTag)
	fullRef := ref(proxy.Addr(), appRepo, origTag)
	side := func(on bool) (err error) {
		name := map[bool]string{true: "on", false: "off"}[on]
		progress("run %d/%d: background fetch %s: starting lazyfs-snapshotter and containerd", n, of, name)
		var stop harness.Closers
		defer stop.Close()
		st, err := startStackWith(ctx, env, proxy, filepath.Join(dir, name), backgroundConfig(on, rate), &stop)
		defer func() {
			if err != nil && ctx.Err() == nil {
				harness.PrintLogs(os.Stderr, st.logs())
			}
			if logsDir != "" {
				if cerr := copyLogs(st.logs(), filepath.Join(logsDir, fmt.Sprintf("run%d-%s", n, name))); cerr != nil {
					progress("warning: %v", cerr)
				}
			}
		}()
		if err != nil {
			return err
		}
		start := time.Now()
		pull, err := pullAndRun(ctx, st, lazyRef, "lazyfs", fmt.Sprintf("bench-bg-%s-%d", name, n))
		if err != nil {
			return err
		}
		if !on {
			r.OffPull = pull
			if r.OffRead, err = readBigFile(ctx, st, lazyRef, "lazyfs", imgs.bigSHA256, false); err != nil {
				return err
			}
			progress("run %d/%d: full pull of %s", n, of, fullRef)
			r.Full, err = pullAndRun(ctx, st, fullRef, "overlayfs", fmt.Sprintf("bench-bg-full-%d", n))
			return err
		}
		r.OnPull = pull
		layers, err := imageLayers(ctx, st.cl, lazyRef)
		if err != nil {
			return err
		}
		r.Layers = len(layers)
		if r.ProvenBeforeRead, err = provenLayers(ctx, st); err != nil {
			return err
		}
		if r.OnRead, err = readBigFile(ctx, st, lazyRef, "lazyfs", imgs.bigSHA256, false); err != nil {
			return err
		}
		if r.ProvenAfterRead, err = provenLayers(ctx, st); err != nil {
			return err
		}
		for {
			proven, err := provenLayers(ctx, st)
			if err != nil {
				return err
			}
			if proven >= r.Layers {
				break
			}
			if time.Since(start) > 10*time.Minute {
				return fmt.Errorf("%d of %d layers proven after 10 minutes", proven, r.Layers)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		r.FullyCachedSeconds = time.Since(start).Seconds()
		progress("    lazyfs    fully cached %s after the start of the pull (%d of %d layers proven when the cold read began, %d when it ended)",
			seconds(r.FullyCachedSeconds), r.ProvenBeforeRead, r.Layers, r.ProvenAfterRead)
		return nil
	}
	order := []bool{true, false}
	if !r.OnFirst {
		order = []bool{false, true}
	}
	for _, on := range order {
		if err := side(on); err != nil {
			return r, err
		}
	}
	return r, nil
}

// startStackWith is startStack with a snapshotter config merged over the
// harness's.
func startStackWith(ctx context.Context, env harness.Env, proxy *harness.Proxy, dir string, config map[string]any, stop *harness.Closers) (*stack, error) {
	return startStackOpts(ctx, harness.SnapshotterOptions{Env: env, Config: config}, proxy, dir, stop)
}

// provenLayers returns how many layers the snapshotter has proven, from its
// lazyfs_layer_proofs_total{result="verified"}.
func provenLayers(ctx context.Context, st *stack) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.sn.DebugAddr()+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("failed to read the snapshotter's metrics: %w", err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("failed to read the snapshotter's metrics: %w", err)
	}
	const prefix = `lazyfs_layer_proofs_total{result="verified"} `
	sc := bufio.NewScanner(bytes.NewReader(page))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", sc.Text(), err)
			}
			return int(f), nil
		}
	}
	return 0, nil
}

// printBackground prints the scenario's medians.
func printBackground(w io.Writer, rate string, results []bgResult) {
	col := func(f func(r bgResult) float64) (med, lo, hi float64) {
		var v []float64
		for _, r := range results {
			v = append(v, f(r))
		}
		return median(v), slices.Min(v), slices.Max(v)
	}
	row := func(label, unit, format string, f func(r bgResult) float64) {
		med, lo, hi := col(f)
		fmt.Fprintf(w, "  %-62s %10s %-6s (%s … %s)\n", label, fmt.Sprintf(format, med), unit, fmt.Sprintf(format, lo), fmt.Sprintf(format, hi))
	}
	fmt.Fprintf(w, "\nbackground fetch, medians of %d runs (range); on = the defaults with [fetch] background_rate = %q, off = [layers] proof_concurrency = 0\n", len(results), rate)
	row("cold read of the 64 MiB file, background fetch off", "s", "%.3f", func(r bgResult) float64 { return coldSeconds(r.OffRead) })
	row("cold read of the 64 MiB file, background fetch on", "s", "%.3f", func(r bgResult) float64 { return coldSeconds(r.OnRead) })
	row("  ratio on / off, per run (issue 11: at most 1.2)", "x", "%.3f", func(r bgResult) float64 { return coldSeconds(r.OnRead) / coldSeconds(r.OffRead) })
	on, _, _ := col(func(r bgResult) float64 { return coldSeconds(r.OnRead) })
	off, _, _ := col(func(r bgResult) float64 { return coldSeconds(r.OffRead) })
	fmt.Fprintf(w, "  %-62s %10.3f x\n", "  ratio of the medians on / off", on/off)
	row("  registry bytes during the read, off", "MiB", "%.2f", func(r bgResult) float64 { return mibOf(r.OffRead.RegistryBytes) })
	row("  registry bytes during the read, on (proofs included)", "MiB", "%.2f", func(r bgResult) float64 { return mibOf(r.OnRead.RegistryBytes) })
	row("  layers proven when the read began (of the image's)", "", "%.0f", func(r bgResult) float64 { return float64(r.ProvenBeforeRead) })
	row("  layers proven when the read ended", "", "%.0f", func(r bgResult) float64 { return float64(r.ProvenAfterRead) })
	row("lazy pull + first command, background fetch on", "s", "%.3f", func(r bgResult) float64 { return r.OnPull.TotalSeconds })
	row("lazy pull + first command, background fetch off", "s", "%.3f", func(r bgResult) float64 { return r.OffPull.TotalSeconds })
	row("lazy pull start → every layer fully cached (read meanwhile)", "s", "%.3f", func(r bgResult) float64 { return r.FullyCachedSeconds })
	row("full pull of the original image (overlayfs, pull only)", "s", "%.3f", func(r bgResult) float64 { return r.Full.PullSeconds })
	row("  ratio fully cached / full pull", "x", "%.3f", func(r bgResult) float64 { return r.FullyCachedSeconds / r.Full.PullSeconds })
}

// coldSeconds is how long the cold read took.
func coldSeconds(r readResult) float64 {
	return float64(bigFileSize) / (1 << 20) / r.ColdMiBps
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode the report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}
