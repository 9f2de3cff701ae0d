package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// workerInfoTimeout bounds one worker API call: a worker that accepts the
// connection and never answers must not stall the benchmark.
const workerInfoTimeout = 10 * time.Second

// workerProc identifies a running worker.
type workerProc struct {
	id   string
	pid  int
	sock string
}

// findWorker asks every worker under runDir (workers/<id>/api.sock) which
// mounts it serves and returns the one serving a layer of imageRef, or nil
// when none does. Sockets that do not answer are skipped: a per-image
// worker that exited when idle may leave its socket behind.
func findWorker(ctx context.Context, runDir, imageRef string) (*workerProc, error) {
	socks, err := filepath.Glob(filepath.Join(runDir, "workers", "*", "api.sock"))
	if err != nil {
		return nil, fmt.Errorf("failed to list worker sockets: %w", err)
	}
	for _, sock := range socks {
		id := filepath.Base(filepath.Dir(sock))
		info, err := workerInfo(ctx, sock, id)
		if err != nil {
			progress("    (worker %s does not answer: %v)", id, err)
			continue
		}
		for _, m := range info.Mounts {
			if m.ImageRef == imageRef {
				return &workerProc{id: info.ID, pid: info.PID, sock: sock}, nil
			}
		}
	}
	return nil, nil
}

func workerInfo(ctx context.Context, sock, id string) (daemonapi.DaemonInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, workerInfoTimeout)
	defer cancel()
	c := daemonapi.NewClient(sock, id)
	defer c.Close()
	return c.Info(ctx)
}

// heapInuseMetric is the Go collector's series of heap bytes in use: it
// tells how much of the resident set the Go heap (the loaded TOC, the tree)
// accounts for.
const heapInuseMetric = "go_memstats_heap_inuse_bytes"

// memStatus is a worker's resident memory, from /proc/<pid>/status, and
// its Go heap in use, from its /metrics.
type memStatus struct {
	// VmRSSKiB is the resident set now, VmHWMKiB its peak so far.
	VmRSSKiB int64 `json:"vmrss_kib"`
	VmHWMKiB int64 `json:"vmhwm_kib"`
	// HeapInuseBytes is -1 when the worker's metrics lack it.
	HeapInuseBytes int64 `json:"go_heap_inuse_bytes"`
}

func (m memStatus) String() string {
	s := fmt.Sprintf("VmRSS %.1f MiB, VmHWM %.1f MiB", float64(m.VmRSSKiB)/1024, float64(m.VmHWMKiB)/1024)
	if m.HeapInuseBytes >= 0 {
		s += fmt.Sprintf(", Go heap in use %.1f MiB", float64(m.HeapInuseBytes)/(1<<20))
	}
	return s
}

// readMemStatus reads the worker's status file first: the metrics request
// allocates in the worker.
// idleWait is how long restedMemStatus waits: a worker hands back the I/O
// buffers it keeps once it served no read for 5 s, which it checks every 5 s.
const idleWait = 12 * time.Second

// restedMemStatus is readMemStatus once the worker has been idle for
// idleWait: what an idle worker holds, per image on a node.
func restedMemStatus(ctx context.Context, w *workerProc) (memStatus, error) {
	t := time.NewTimer(idleWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return memStatus{}, ctx.Err()
	}
	return readMemStatus(ctx, w)
}

func readMemStatus(ctx context.Context, w *workerProc) (memStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
	if err != nil {
		return memStatus{}, fmt.Errorf("failed to read the status of worker pid %d: %w", w.pid, err)
	}
	m, err := parseMemStatus(data)
	if err != nil {
		return memStatus{}, err
	}
	m.HeapInuseBytes = -1
	ctx, cancel := context.WithTimeout(ctx, workerInfoTimeout)
	defer cancel()
	c := daemonapi.NewClient(w.sock, w.id)
	defer c.Close()
	text, err := c.Metrics(ctx)
	if err != nil {
		return memStatus{}, err
	}
	if v, ok := metricValue(text, heapInuseMetric); ok {
		m.HeapInuseBytes = int64(v)
	}
	return m, nil
}

// metricValue returns the value of an unlabelled series in Prometheus text.
func metricValue(text []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == name {
			v, err := strconv.ParseFloat(fields[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// parseMemStatus reads the VmRSS and VmHWM lines ("VmRSS:\t  1234 kB").
func parseMemStatus(data []byte) (memStatus, error) {
	var m memStatus
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return memStatus{}, fmt.Errorf("unexpected %s line %q", key, sc.Text())
		}
		v, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return memStatus{}, fmt.Errorf("unexpected %s line %q: %w", key, sc.Text(), err)
		}
		if key == "VmRSS" {
			m.VmRSSKiB = v
		} else {
			m.VmHWMKiB = v
		}
		found++
	}
	if found != 2 {
		return memStatus{}, fmt.Errorf("status has no VmRSS or VmHWM line")
	}
	return m, nil
}
