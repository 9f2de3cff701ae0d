package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/moby/sys/mountinfo"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// lazyfsFSType is the filesystem type of a layer's FUSE mount in mountinfo.
const lazyfsFSType = "fuse.lazyfs"

// workerAPI returns a client of the worker id of snap (its API socket is
// <run dir>/workers/<id>/api.sock).
func workerAPI(snap *harness.Snapshotter, id string) *daemonapi.Client {
	return daemonapi.NewClient(filepath.Join(snap.RunDir(), "workers", id, "api.sock"), id)
}

// liveWorkers asks every worker socket dir of snap for the worker's
// description; a dir whose worker does not answer (it died, and no
// snapshotter cleaned up after it) is left out.
func liveWorkers(t testing.TB, snap *harness.Snapshotter) []daemonapi.DaemonInfo {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(snap.RunDir(), "workers"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []daemonapi.DaemonInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := workerAPI(snap, e.Name()).Info(ctx)
		cancel()
		if err == nil {
			out = append(out, info)
		}
	}
	return out
}

// onlyWorker returns the one live worker of snap (the test image is one
// image: one worker per image).
func onlyWorker(t testing.TB, snap *harness.Snapshotter) daemonapi.DaemonInfo {
	t.Helper()
	ws := liveWorkers(t, snap)
	if len(ws) != 1 {
		t.Fatalf("want exactly one live worker, found %d: %+v", len(ws), ws)
	}
	return ws[0]
}

// servingMounts counts the mounts a worker reports as serving.
func servingMounts(info daemonapi.DaemonInfo) int {
	n := 0
	for _, m := range info.Mounts {
		if m.State == daemonapi.MountServing {
			n++
		}
	}
	return n
}

// fuseMounts returns the lazyfs FUSE mounts under snap's root, from
// /proc/self/mountinfo (never from the mountpoints themselves: a stat on a
// mount whose worker is gone can block), as mountpoint → number of mounts
// stacked there. Mount ids cannot tell a mount from its replacement: the
// kernel hands the lowest free id out again.
func fuseMounts(t testing.TB, snap *harness.Snapshotter) map[string]int {
	t.Helper()
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != lazyfsFSType || !strings.HasPrefix(m.Mountpoint, snap.Root()+"/"), false
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range infos {
		out[m.Mountpoint]++
	}
	return out
}

// waitFor polls cond every 50 ms until it holds or timeout passes; then it
// fails the test with what cond last said. It returns how long it waited.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v; last state: %s", what, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killProcess SIGKILLs pid (not a child of the test: workers belong to the
// snapshotter) and waits until it has stopped running.
func killProcess(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("pid %d exits after SIGKILL", pid), func() (bool, string) {
		return !running(pid), "still running"
	})
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// metricValue returns the value of the series name{lbls} in a Prometheus
// text page, and whether the page has it.
func metricValue(t testing.TB, page []byte, name string, lbls map[string]string) (float64, bool) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("metrics page does not parse: %v\n%s", err, page)
	}
	fam, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range lbls {
			if got[k] != v {
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
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// checkRemoteLabels asserts that every layer of img has a committed lazyfs
// snapshot labelled as a remote (lazily mounted) layer.
func (s *stack) checkRemoteLabels(t testing.TB, img estargzImage) {
	t.Helper()
	sn := s.cl.SnapshotService("lazyfs")
	for i, chainID := range img.chainIDs {
		info, err := sn.Stat(context.Background(), chainID)
		if err != nil {
			t.Errorf("layer %d (%s): snapshot %s: %v", i+1, img.layers[i].Digest, chainID, err)
			continue
		}
		if info.Kind != snapshots.KindCommitted || info.Labels[labels.Remote] == "" {
			t.Errorf("layer %d (%s): snapshot %s is %v with labels %v, want committed with %s",
				i+1, img.layers[i].Digest, chainID, info.Kind, info.Labels, labels.Remote)
		}
	}
}

// workerLogs returns the content of every worker log of snap.
func workerLogs(t *testing.T, snap *harness.Snapshotter) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(snap.LogDir(), "daemons", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(b)
	}
	return out
}

// httpGet returns the body of a 200 answer to GET url.
func httpGet(t testing.TB, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return body
}
