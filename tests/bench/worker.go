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
	id  string
	pid int
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
				return &workerProc{id: info.ID, pid: info.PID}, nil
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

// memStatus is a process's resident memory, from /proc/<pid>/status.
type memStatus struct {
	// VmRSSKiB is the resident set now, VmHWMKiB its peak so far.
	VmRSSKiB int64 `json:"vmrss_kib"`
	VmHWMKiB int64 `json:"vmhwm_kib"`
}

func (m memStatus) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB, VmHWM %.1f MiB", float64(m.VmRSSKiB)/1024, float64(m.VmHWMKiB)/1024)
}

func readMemStatus(pid int) (memStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, fmt.Errorf("failed to read the status of worker pid %d: %w", pid, err)
	}
	return parseMemStatus(data)
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
