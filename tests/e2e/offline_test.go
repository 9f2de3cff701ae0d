package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// commandScript runs in a detached container and executes, in order, the
// shell scripts the test drops into its bind mount as /out/go-<n>: the
// output goes to /out/out-<n>, the exit status to /out/done-<n> (renamed into
// place, so a file that exists is complete). A script that is just "quit"
// ends the container. Everything runs on the copy of busybox in the
// container's writable layer, so that the loop itself never reads a lazy
// layer (see reader_test.go).
const commandScript = `n=0
while :; do
  while [ ! -e /out/go-$n ]; do /tmp/busybox sleep 0.05; done
  if [ "$(/tmp/busybox cat /out/go-$n)" = quit ]; then exit 0; fi
  /tmp/busybox sh /out/go-$n >/out/out-$n 2>&1
  echo "exit=$?" >/out/done-$n.tmp; /tmp/busybox mv /out/done-$n.tmp /out/done-$n
  n=$((n+1))
done`

// commander drives a container running commandScript.
type commander struct {
	*reader
	next int
}

// run has the container execute script and returns its output and exit
// status, waiting at most timeout.
func (c *commander) run(t *testing.T, script string, timeout time.Duration) (string, int) {
	t.Helper()
	n := c.next
	c.next++
	tmp := filepath.Join(c.dir, fmt.Sprintf("go-%d.tmp", n))
	if err := os.WriteFile(tmp, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, fmt.Sprintf("go-%d", n))); err != nil {
		t.Fatal(err)
	}
	var done []byte
	waitFor(t, timeout, fmt.Sprintf("container %s runs command %d", c.id, n), func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("done-%d", n)))
		if err != nil {
			return false, "stderr: " + c.stderr()
		}
		done = b
		return true, ""
	})
	var code int
	if _, err := fmt.Sscanf(string(done), "exit=%d", &code); err != nil {
		t.Fatalf("command %d: done file %q: %v", n, done, err)
	}
	out, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("out-%d", n)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// quit ends the container's loop.
func (c *commander) quit(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("go-%d", c.next)), []byte("quit"), 0o644); err != nil {
		t.Error(err)
	}
}

// Scripts run by the commander of TestRestoreWithoutRegistry. readList
// verifies every file of the image except the 2000 small files (one registry
// request each when cold) and the 8 MiB random file, which no read-ahead
// reaches (its chunks are far larger than a read-ahead window): that file
// stays uncached until readUncached reads it.
const (
	readList = `/tmp/busybox grep -v -e '  ` + harness.TestImageManyDir + `/' -e '  ` + harness.TestImageRandomFile + `$' ` +
		harness.TestImageChecksumsPath + ` >/tmp/list || exit 10
/tmp/busybox sha256sum -c /tmp/list >/tmp/sums 2>&1; rc=$?
echo "ok=$(/tmp/busybox grep -c ': OK$' /tmp/sums) of $(/tmp/busybox wc -l </tmp/list)"
/tmp/busybox grep -v ': OK$' /tmp/sums
exit $rc`
	readUncached = `/tmp/busybox grep -F '  ` + harness.TestImageRandomFile + `' ` + harness.TestImageChecksumsPath +
		` | /tmp/busybox sha256sum -c -`
)

// dropPageCache makes the kernel forget clean file pages, so that the next
// read of a lazy file reaches its worker rather than the page cache (FUSE
// files are opened with FOPEN_KEEP_CACHE, and a takeover keeps the
// connection and its cache).
func dropPageCache(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		t.Fatalf("drop the page cache: %v", err)
	}
}

// TestRestoreWithoutRegistry is how issue #11 judges restore without the
// registry. A running container reads the image's files once; then, with the
// registry down, it reads them again after its worker is SIGKILLed (a
// successor takes the connections over) and again after the snapshotter is
// killed and restarted and the worker killed once more, the page cache
// dropped each time so that every byte comes from the worker's disk cache.
// A new container starts from the image with the registry down. A file never
// read gets EIO while the registry is down — counted, logged once for the
// layer however many reads fail — and reads fine, on the same mounts and the
// same worker process, once the registry is back.
func TestRestoreWithoutRegistry(t *testing.T) {
	s := startStack(t, harness.V2)
	gate := startGate(t, s.reg.Addr())
	img := s.convertToEStargz(t, gate.Addr())
	s.pullLazily(t, img)
	ctx := context.Background()
	mounts := fuseMounts(t, s.snap)

	c := &commander{reader: s.startReader(t, img.ref, "offline-reader", commandScript)}
	defer c.quit(t)
	mustRead := func(what string) {
		t.Helper()
		out, code := c.run(t, readList, 2*time.Minute)
		if code != 0 {
			t.Fatalf("%s: the files read before do not read back (exit %d):\n%s", what, code, out)
		}
		t.Logf("%s: %s", what, strings.SplitN(out, "\n", 2)[0])
	}
	mustRead("first read, registry up")

	w := onlyWorker(t, s.snap)
	waitFor(t, 30*time.Second, "the worker's disk cache writes catch up", func() (bool, string) {
		page, err := workerAPI(s.snap, w.ID).Metrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		queued, _ := metricValue(t, page, "lazyfs_cache_write_queue_bytes", nil)
		return queued == 0, fmt.Sprintf("%v bytes queued", queued)
	})
	if err := gate.Down(); err != nil {
		t.Fatal(err)
	}

	// 1. The worker dies: its successor serves the same connections from
	// the stored TOCs and the disk cache.
	killProcess(t, w.PID)
	waitRemounted(t, s, img, w.PID, mounts)
	dropPageCache(t)
	mustRead("after the worker was killed, registry down")
	w = onlyWorker(t, s.snap)
	page, err := workerAPI(s.snap, w.ID).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hits, _ := metricValue(t, page, "lazyfs_cache_hits_total", nil)
	fetches, _ := metricValue(t, page, chunkFetches, nil)
	if hits == 0 || fetches != 0 {
		t.Errorf("successor %s (pid %d): %v disk cache hits, %v chunk fetches; want hits and no fetch", w.ID, w.PID, hits, fetches)
	}

	// 2. A file never read fails with EIO, once per read, and is logged
	// once for its layer.
	for i := range 3 {
		out, code := c.run(t, readUncached, time.Minute)
		if code == 0 || !strings.Contains(out, "Input/output error") {
			t.Fatalf("uncached read %d with the registry down: exit %d, output %q; want an I/O error", i+1, code, out)
		}
	}
	page, err = workerAPI(s.snap, w.ID).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := metricValue(t, page, "lazyfs_unavailable_reads_total", nil); n < 3 {
		t.Errorf("lazyfs_unavailable_reads_total = %v after 3 failed reads, want >= 3", n)
	}
	outage := "registry unreachable: reads of data not cached fail until it is back"
	layerLogs := func() map[string]int {
		got := map[string]int{}
		for _, text := range workerLogs(t, s.snap) {
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, outage) {
					for _, l := range img.layers {
						if strings.Contains(line, l.Digest.String()) {
							got[l.Digest.String()]++
						}
					}
				}
			}
		}
		return got
	}
	logged := layerLogs()
	if len(logged) != 1 {
		t.Errorf("outage logged for layers %v, want exactly the layer of %s", logged, harness.TestImageRandomFile)
	}
	for l, n := range logged {
		if n != 1 {
			t.Errorf("layer %s: outage logged %d times for 3 failed reads, want once", l, n)
		}
	}

	// 3. The registry is back: the same read succeeds on the same mounts
	// and worker, without a remount.
	if err := gate.Up(); err != nil {
		t.Fatal(err)
	}
	if out, code := c.run(t, readUncached, time.Minute); code != 0 {
		t.Fatalf("read with the registry back: exit %d:\n%s", code, out)
	}
	if now := onlyWorker(t, s.snap); now.PID != w.PID {
		t.Errorf("worker %s: pid %d after the registry came back, %d before: want no restart", w.ID, now.PID, w.PID)
	}
	if now := fuseMounts(t, s.snap); fmt.Sprint(now) != fmt.Sprint(mounts) {
		t.Errorf("FUSE mounts %v after the registry came back, %v before: want the same", now, mounts)
	}

	// 4. The snapshotter is killed and restarted with the registry down; it
	// re-adopts the worker, which is then killed: the successor serves the
	// running container from the disk cache again.
	if err := gate.Down(); err != nil {
		t.Fatal(err)
	}
	s.snap.Kill()
	if err := s.snap.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, remountDeadline, "the restarted snapshotter re-adopts the worker", func() (bool, string) {
		ws := liveWorkers(t, s.snap)
		return len(ws) == 1 && ws[0].PID == w.PID && servingMounts(ws[0]) == len(img.layers), fmt.Sprintf("live workers %+v", ws)
	})
	killProcess(t, w.PID)
	waitRemounted(t, s, img, w.PID, mounts)
	dropPageCache(t)
	mustRead("after the snapshotter restarted and the worker was killed, registry down")

	// 5. A new container starts from the image with the registry down.
	out, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm", img.ref, "offline-new", "sh", "-c",
		strings.ReplaceAll(readList, "/tmp/busybox ", ""))
	if err != nil {
		t.Fatalf("new container with the registry down: %v", err)
	}
	t.Logf("new container, registry down: %s", strings.SplitN(out, "\n", 2)[0])
}
