package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/tests/chaos"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// The driver of the failover chaos test and its benchmark: two eStargz
// images sharing a base layer, pulled lazily, a reader container of each
// (package tests/chaos/reader, itself on the lazy base layer), and worker
// kills under them.

const (
	// servedDeadline bounds the wait for a killed worker's id to be served
	// by a successor.
	servedDeadline = 20 * time.Second
	// servedPoll is how often the wait asks; it bounds the resolution of
	// the death-to-serving figure from the test's side.
	servedPoll = 2 * time.Millisecond
	// progressDeadline bounds the wait for every reader to complete ops
	// after a kill: a reader that makes none for that long is stuck.
	progressDeadline = 15 * time.Second
	// progressOps is how many ops each reader completes after a successor
	// serves before the next kill.
	progressOps = 20
	// stallMargin extends a kill window past the moment the successor was
	// seen serving: an op blocked on the dead worker ends a little later.
	stallMargin = 50 * time.Millisecond
)

// chaosReaderBinary is built once per test binary.
var chaosReaderBinary = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "lazyfs-chaos-reader-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := harness.BuildChaosReader(context.Background(), env, dir)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
})

// chaosRun is one stack with the two chaos images pulled lazily and a
// reader container of each.
type chaosRun struct {
	s       *stack
	mode    string
	readers []*chaosReader
	// mounts is, per worker id, the number of mounts it serves.
	mounts map[string]int
	// kills and restarts are what the run did; restarts are the spans in
	// which the snapshotter was down.
	kills    []chaos.Kill
	restarts [][2]time.Time
}

// chaosReader is a running reader container.
type chaosReader struct {
	image string // "a" or "b"
	id    string // container id
	dir   string // host dir mounted at /out
}

// startChaos starts a stack in worker mode (config value), builds, converts
// and lazily pulls the chaos images, and starts a reader container of each
// with the given pause between ops.
func startChaos(t testing.TB, mode string, pace time.Duration) *chaosRun {
	t.Helper()
	ctx := context.Background()
	reader, err := chaosReaderBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{
		Env: env,
		Config: map[string]any{"workers": map[string]any{
			"mode": mode,
			// The test kills each worker again within a second of its
			// takeover, on purpose: faster than any crash loop. A window
			// of 1ms keeps the crash-loop guard (and its backoff) out of
			// the way; the supervisor's tests cover the guard.
			"crash_loop_window": "1ms",
		}},
	})
	r := &chaosRun{s: s, mode: mode}

	names := []string{"a", "b"}
	layout := t.TempDir()
	layers := harness.ChaosImageLayers(reader, names...)
	imgs := map[string]estargzImage{}
	for _, name := range names {
		if _, err := harness.WriteOCILayout(layout, name, layers[name]); err != nil {
			t.Fatal(err)
		}
		src := s.reg.Addr() + "/lazyfs/chaos-" + name + ":orig"
		if err := harness.Push(ctx, layout, name, src); err != nil {
			t.Fatal(err)
		}
		imgs[name] = s.convertImage(t, src, "lazyfs/chaos-"+name, "estargz", "")
	}
	a, b := imgs["a"], imgs["b"]
	if a.chainIDs[0] != b.chainIDs[0] {
		t.Fatalf("the chaos images do not share their base layer after conversion: %s (%s) and %s (%s)",
			a.layers[0].Digest, a.chainIDs[0], b.layers[0].Digest, b.chainIDs[0])
	}
	for _, name := range names {
		s.pullRef(t, imgs[name].ref, "lazyfs")
		s.checkRemoteLabels(t, imgs[name])
	}
	// The base layer is one snapshot, hence one mount: 3 in all.
	if m := fuseMounts(t, s.snap); len(m) != 3 {
		t.Fatalf("lazyfs FUSE mounts after pulling both images: %v, want 3 (shared base, two top layers)", m)
	}
	r.mounts = map[string]int{}
	for _, w := range liveWorkers(t, s.snap) {
		r.mounts[w.ID] = servingMounts(w)
	}
	wantWorkers := map[string]int{"per-image": 2, "shared": 1}[mode]
	if len(r.mounts) != wantWorkers {
		t.Fatalf("%s mode: workers serving after the pull: %v, want %d", mode, r.mounts, wantWorkers)
	}
	t.Logf("%s mode: workers and their mounts: %v", mode, r.mounts)

	for _, name := range names {
		cr := &chaosReader{image: name, id: "chaos-" + mode + "-" + name, dir: t.TempDir()}
		if _, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--detach",
			"--mount", "type=bind,src="+cr.dir+",dst=/out,options=rbind:rw",
			imgs[name].ref, cr.id, harness.ChaosReaderPath,
			"-manifest", harness.ChaosManifestPath, "-out", "/out", "-pace", pace.String()); err != nil {
			t.Fatal(err)
		}
		r.readers = append(r.readers, cr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, cr := range r.readers {
				t.Logf("==== reader %s: %s ====\n%s\n---- first errors (%s) ----\n%s", cr.id, chaos.StderrFile,
					fileHead(filepath.Join(cr.dir, chaos.StderrFile), 60), chaos.ErrorsFile, fileHead(filepath.Join(cr.dir, chaos.ErrorsFile), 30))
			}
		}
	})
	r.waitProgress(t, progressOps, "readers start")
	return r
}

// fileHead returns the first n lines of a file, or why it cannot.
func fileHead(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for i := 0; i < n && sc.Scan(); i++ {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// progress returns a reader's last progress (zero before its first).
func (cr *chaosReader) progress(t testing.TB) chaos.Progress {
	t.Helper()
	var p chaos.Progress
	if err := chaos.ReadJSON(cr.dir, chaos.ProgressFile, &p); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return p
}

// taskStatus returns the status of a reader's task ("running", or how it
// ended).
func (r *chaosRun) taskStatus(t testing.TB, cr *chaosReader) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.s.cl.LoadContainer(ctx, cr.id)
	if err != nil {
		t.Fatalf("container %s: %v", cr.id, err)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return "no task"
	}
	if err != nil {
		t.Fatalf("task of %s: %v", cr.id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", cr.id, err)
	}
	if st.Status == client.Running {
		return string(st.Status)
	}
	return fmt.Sprintf("%s (exit status %d at %s)", st.Status, st.ExitStatus, st.ExitTime.Format(time.RFC3339Nano))
}

// waitProgress waits until every reader still running has completed n ops
// more than when called. A reader whose container has exited is not waited
// for (the final checks report it). It fails the test if a running reader
// makes no progress within progressDeadline.
func (r *chaosRun) waitProgress(t testing.TB, n int64, what string) {
	t.Helper()
	base := map[string]int64{}
	for _, cr := range r.readers {
		base[cr.id] = cr.progress(t).Ops
	}
	waitFor(t, progressDeadline, what, func() (bool, string) {
		var state []string
		done := true
		for _, cr := range r.readers {
			p := cr.progress(t)
			if p.Ops >= base[cr.id]+n {
				continue
			}
			if st := r.taskStatus(t, cr); st != string(client.Running) {
				continue
			}
			done = false
			state = append(state, fmt.Sprintf("reader %s: %d ops (%d before), oldest op in flight for %d ms; stderr: %q",
				cr.id, p.Ops, base[cr.id], p.OldestInFlightMs, fileHead(filepath.Join(cr.dir, chaos.StderrFile), 5)))
		}
		return done, strings.Join(state, "; ")
	})
}

// workerInfo asks worker id for its description, with a short deadline.
func (r *chaosRun) workerInfo(id string) (daemonapi.DaemonInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := workerAPI(r.s.snap, id)
	defer c.Close()
	return c.Info(ctx)
}

// kill sends sig to the worker id and waits until the id is served by a
// successor (another pid, every mount serving) and the old process is gone.
func (r *chaosRun) kill(t testing.TB, id string, sig syscall.Signal) chaos.Kill {
	t.Helper()
	before, err := r.workerInfo(id)
	if err != nil {
		t.Fatalf("worker %s before kill %d: %v", id, len(r.kills)+1, err)
	}
	k := chaos.Kill{Worker: id, Signal: signalName(sig), At: time.Now()}
	if err := syscall.Kill(before.PID, sig); err != nil {
		t.Fatalf("kill %d: %s of worker %s (pid %d): %v", len(r.kills)+1, sig, id, before.PID, err)
	}
	deadline := k.At.Add(servedDeadline)
	var last string
	for {
		info, err := r.workerInfo(id)
		switch {
		case err != nil:
			last = err.Error()
		case info.PID == before.PID:
			last = "still answered by the killed pid"
		case servingMounts(info) != r.mounts[id]:
			last = fmt.Sprintf("pid %d serves %d of %d mounts: %+v", info.PID, servingMounts(info), r.mounts[id], info.Mounts)
		default:
			k.Served = time.Now()
		}
		if !k.Served.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kill %d (%s of worker %s, pid %d): the id was not served by a successor within %v; last: %s",
				len(r.kills)+1, sig, id, before.PID, servedDeadline, last)
		}
		time.Sleep(servedPoll)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("killed worker %s (pid %d) is gone", id, before.PID), func() (bool, string) {
		return !running(before.PID), "still running"
	})
	r.kills = append(r.kills, k)
	return k
}

// restartSnapshotter SIGKILLs the snapshotter and starts it again; the
// workers must outlive it, still serving under the same pids.
func (r *chaosRun) restartSnapshotter(t testing.TB) {
	t.Helper()
	pids := map[string]int{}
	for id := range r.mounts {
		info, err := r.workerInfo(id)
		if err != nil {
			t.Fatalf("worker %s before the snapshotter kill: %v", id, err)
		}
		pids[id] = info.PID
	}
	from := time.Now()
	r.s.snap.Kill()
	if err := r.s.snap.Restart(context.Background()); err != nil {
		t.Fatalf("snapshotter restart after restart %d: %v", len(r.restarts)+1, err)
	}
	r.restarts = append(r.restarts, [2]time.Time{from, time.Now()})
	for id, pid := range pids {
		info, err := r.workerInfo(id)
		if err != nil || info.PID != pid || servingMounts(info) != r.mounts[id] {
			t.Fatalf("worker %s after snapshotter restart %d: %+v (%v); want pid %d serving %d mounts",
				id, len(r.restarts), info, err, pid, r.mounts[id])
		}
	}
}

// chaosPlan says what a run does.
type chaosPlan struct {
	kills int
	// quitEvery: every quitEvery-th kill is a SIGQUIT (0: none).
	quitEvery int
	// restartEvery: the snapshotter is SIGKILLed and restarted before
	// every restartEvery-th kill (0: never).
	restartEvery int
}

// run kills the workers round robin as planned, waiting after each kill
// for the successor and for every reader to go on.
func (r *chaosRun) run(t testing.TB, plan chaosPlan) {
	t.Helper()
	ids := make([]string, 0, len(r.mounts))
	for id := range r.mounts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i := range plan.kills {
		if plan.restartEvery > 0 && i > 0 && i%plan.restartEvery == 0 {
			r.restartSnapshotter(t)
		}
		sig := syscall.SIGKILL
		if plan.quitEvery > 0 && i%plan.quitEvery == plan.quitEvery-1 {
			sig = syscall.SIGQUIT
		}
		r.kill(t, ids[i%len(ids)], sig)
		r.waitProgress(t, progressOps, fmt.Sprintf("readers go on after kill %d", i+1))
	}
}

// chaosResult is what the readers reported at the stop.
type chaosResult struct {
	stats  map[string]chaos.Stats // by container id
	status map[string]string      // task status right before the stop
	ops    [][]chaos.OpRecord
}

// stop records the readers' task status, asks them to stop and collects
// their stats and op logs.
func (r *chaosRun) stop(t testing.TB) chaosResult {
	t.Helper()
	res := chaosResult{stats: map[string]chaos.Stats{}, status: map[string]string{}}
	for _, cr := range r.readers {
		res.status[cr.id] = r.taskStatus(t, cr)
		if err := os.WriteFile(filepath.Join(cr.dir, chaos.StopFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, cr := range r.readers {
		if res.status[cr.id] != string(client.Running) {
			continue
		}
		// The reader gives its loops 2 × StuckAfter to finish.
		waitFor(t, 3*chaos.StuckAfter+10*time.Second, "reader "+cr.id+" writes its stats", func() (bool, string) {
			_, err := os.Stat(filepath.Join(cr.dir, chaos.StatsFile))
			return err == nil, fmt.Sprintf("%v; task %s", err, r.taskStatus(t, cr))
		})
		var st chaos.Stats
		if err := chaos.ReadJSON(cr.dir, chaos.StatsFile, &st); err != nil {
			t.Fatal(err)
		}
		res.stats[cr.id] = st
	}
	for _, cr := range r.readers {
		ops, err := chaos.ReadOpRecords(filepath.Join(cr.dir, chaos.OpsFile))
		if err != nil {
			t.Fatal(err)
		}
		res.ops = append(res.ops, ops)
	}
	return res
}

// report prints what the kills cost the readers.
func (r *chaosRun) report(t testing.TB, res chaosResult) chaos.StallReport {
	t.Helper()
	rep := chaos.Analyze(res.ops, r.kills, r.restarts, stallMargin)
	sigs := map[string]int{}
	for _, k := range r.kills {
		sigs[k.Signal]++
	}
	total := 0
	for _, ops := range res.ops {
		total += len(ops)
	}
	t.Logf("%s mode: %d worker kills %v, %d snapshotter kills and restarts, %d reader ops", r.mode, len(r.kills), sigs, len(r.restarts), total)
	t.Logf("  death to serving (signal → successor seen serving, polled every %v): %s", servedPoll, rep.DeathToServing)
	t.Logf("  reader stall per kill (longest op across each kill, per reader):   %s", rep.PerKill)
	t.Logf("  op latency in kill windows (kill → serving + %v):                  %s", stallMargin, rep.InWindows)
	t.Logf("  op latency without kills (baseline, same run):                      %s", rep.Baseline)
	for _, op := range rep.Slowest {
		t.Logf("  slow op in a kill window: %s at %s took %v (%s)", op.Op, op.Start.Format("15:04:05.000000"), op.Duration, resultName(op.Result))
	}
	return rep
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

func resultName(r chaos.Result) string {
	switch r {
	case chaos.ResultError:
		return "error"
	case chaos.ResultWrong:
		return "wrong data"
	}
	return "ok"
}

// check asserts what failover promises the readers.
func (r *chaosRun) check(t testing.TB, res chaosResult) {
	t.Helper()
	for _, cr := range r.readers {
		if st := res.status[cr.id]; st != string(client.Running) {
			// 135 is 128 + SIGBUS: a page of the reader's own binary, on
			// the lazy base layer, could not be read.
			t.Errorf("reader %s (image %s) exited during the kills: task %s; its stderr: %q; its first errors:\n%s",
				cr.id, cr.image, st, fileHead(filepath.Join(cr.dir, chaos.StderrFile), 5), fileHead(filepath.Join(cr.dir, chaos.ErrorsFile), 10))
			continue
		}
		st := res.stats[cr.id]
		if st.Errors > 0 {
			t.Errorf("reader %s (image %s) saw %d read errors in %d ops over %d worker kills; first: %s",
				cr.id, cr.image, st.Errors, st.TotalOps(), len(r.kills), strings.Join(firstN(st.FirstErrors, 3), " | "))
		}
		if st.Wrong > 0 {
			t.Errorf("reader %s (image %s) read %d times wrong bytes or metadata; first: %s",
				cr.id, cr.image, st.Wrong, strings.Join(firstN(st.FirstWrong, 3), " | "))
		}
		if st.Stuck > 0 || st.Unfinished > 0 || st.MaxLatency > chaos.StuckAfter {
			t.Errorf("reader %s (image %s): %d ops stuck past %v, %d unfinished at the stop, longest op %v",
				cr.id, cr.image, st.Stuck, chaos.StuckAfter, st.Unfinished, st.MaxLatency)
		}
		if st.TotalOps() == 0 || st.OpsLogErrors > 0 {
			t.Errorf("reader %s (image %s): %d ops, %d op-log write errors", cr.id, cr.image, st.TotalOps(), st.OpsLogErrors)
		}
	}
}

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }
