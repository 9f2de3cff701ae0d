package supervisor

// Read-only queries for the management API (snapshotterctl): what each
// worker is, what it serves, how often it was restarted and how it last
// ended. Nothing here changes a worker or waits on one: the answers come
// from the supervisor's memory and /proc, never from a worker's API, so a
// hung worker cannot hang the operator's view of it.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// Mount states as MountStatus reports them.
const (
	// MountServing: the supervisor holds the connection and its INIT, so
	// a successor can take it over.
	MountServing = "serving"
	// MountUnheld: no connection is held (a worker of an earlier run that
	// could not hand it over): if the worker dies, its readers get errors.
	MountUnheld = "unheld"
)

// WorkerStatus is what the supervisor knows of one worker.
type WorkerStatus struct {
	ID        string
	PID       int
	Mode      Mode
	State     State
	StartTime time.Time // zero when unknown
	// Restarts counts the successors that took this id over (failovers
	// and planned replacements) since this snapshotter started.
	Restarts int
	LastExit *ExitStatus // nil while no process of this id has exited
	RSSBytes int64       // resident memory, from /proc/<pid>/status; 0 when unknown
	LogFile  string
	Mounts   []MountStatus
}

// ResendSupported tells whether every mount of the worker can have its
// unanswered requests resent after a takeover (FUSE_NOTIFY_RESEND); false
// when it has no mounts, since nothing tells yet.
func (w WorkerStatus) ResendSupported() bool {
	if len(w.Mounts) == 0 {
		return false
	}
	for _, m := range w.Mounts {
		if !m.Resend {
			return false
		}
	}
	return true
}

// MountStatus is one FUSE mount a worker serves.
type MountStatus struct {
	ID          string
	WorkerID    string
	Mountpoint  string
	ImageRef    string
	LayerDigest string
	State       string
	// Resend tells whether the kernel offered FUSE_NOTIFY_RESEND in this
	// connection's INIT.
	Resend bool
	// Verification is the snapshotter's verdict on the layer's identity
	// (daemonapi.Verified or Forged; Unverified while none), and DiffID
	// the DiffID the blob was found to have.
	Verification string
	DiffID       string
	// Protocol is the FUSE protocol version the kernel offered in this
	// connection's INIT ("7.41"); empty when its INIT is not known.
	Protocol string
}

// ExitStatus is how a process of a worker id ended.
type ExitStatus struct {
	PID    int
	Time   time.Time
	Cause  string // as in lazyfs_failovers_total: killed, signal, exit, unknown
	Detail string
	// Expected: the supervisor stopped it (shutdown, idle, or replaced by
	// a planned restart, which kills the old process); not a crash.
	Expected bool
}

// workerHistory is what outlives one process of a worker id: restarts and
// the last exit. Its zero value is ready to use.
type workerHistory struct {
	mu   sync.Mutex
	byID map[string]*historyEntry
}

type historyEntry struct {
	restarts int
	lastExit *ExitStatus
	failed   bool // its takeover was given up (a crash loop)
}

func (h *workerHistory) entry(id string) *historyEntry {
	if h.byID == nil {
		h.byID = map[string]*historyEntry{}
	}
	e, ok := h.byID[id]
	if !ok {
		e = &historyEntry{}
		h.byID[id] = e
	}
	return e
}

// exited records that w's process is gone (called from handleExit).
func (h *workerHistory) exited(w *worker) {
	cause, detail := w.exitCause()
	w.mu.Lock()
	expected := w.stopping
	w.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entry(w.id).lastExit = &ExitStatus{PID: w.pid, Time: time.Now(), Cause: cause, Detail: detail, Expected: expected}
}

// restarted records that a successor took id over (called from install).
func (h *workerHistory) restarted(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(id)
	e.restarts++
	e.failed = false
}

// gaveUp records that id's takeover was given up (called from giveUp).
func (h *workerHistory) gaveUp(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entry(id).failed = true
}

// failedIDs returns the ids whose takeover was given up.
func (h *workerHistory) failedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for id, e := range h.byID {
		if e.failed {
			ids = append(ids, id)
		}
	}
	return ids
}

func (h *workerHistory) get(id string) (restarts int, lastExit *ExitStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.byID[id]
	if !ok {
		return 0, nil
	}
	if e.lastExit != nil {
		le := *e.lastExit
		lastExit = &le
	}
	return e.restarts, lastExit
}

// WorkerList returns every worker the supervisor runs, sorted by id.
func (s *Supervisor) WorkerList() []WorkerStatus {
	s.mu.Lock()
	workers := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		workers = append(workers, w)
	}
	s.mu.Unlock()
	out := make([]WorkerStatus, 0, len(workers))
	running := map[string]bool{}
	for _, w := range workers {
		out = append(out, s.status(w))
		running[w.id] = true
	}
	// A worker id given up in a crash loop runs no process, but its
	// layers are failed: the operator must see it.
	for _, id := range s.history.failedIDs() {
		if !running[id] {
			restarts, lastExit := s.history.get(id)
			out = append(out, WorkerStatus{ID: id, Mode: s.opts.Mode, State: StateFailed, Restarts: restarts, LastExit: lastExit, LogFile: s.logPath(id)})
		}
	}
	slices.SortFunc(out, func(a, b WorkerStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// WorkerStatus returns the worker id, or an error wrapping
// errdefs.ErrNotFound when no worker runs under that id.
func (s *Supervisor) WorkerStatus(id string) (WorkerStatus, error) {
	w := s.current(id)
	if w == nil {
		return WorkerStatus{}, fmt.Errorf("worker %s: %w", id, errdefs.ErrNotFound)
	}
	return s.status(w), nil
}

// WorkerLogPath returns where the output of worker id goes, whether or not
// it runs: the log of a worker that is gone is what explains why.
func (s *Supervisor) WorkerLogPath(id string) string { return s.logPath(id) }

// Mode returns how layers are spread over workers.
func (s *Supervisor) Mode() Mode { return s.opts.Mode }

func (s *Supervisor) status(w *worker) WorkerStatus {
	restarts, lastExit := s.history.get(w.id)
	st := WorkerStatus{
		ID:        w.id,
		PID:       w.pid,
		Mode:      s.opts.Mode,
		StartTime: ticksToTime(w.startTime),
		Restarts:  restarts,
		LastExit:  lastExit,
		LogFile:   s.logPath(w.id),
	}
	mounts := w.mountList()
	st.State = w.state()
	if st.State != StateExited && st.State != StateTakingOver {
		st.RSSBytes, _ = processRSS(w.pid)
	}
	for _, m := range mounts {
		st.Mounts = append(st.Mounts, mountStatus(w, m))
	}
	slices.SortFunc(st.Mounts, func(a, b MountStatus) int { return strings.Compare(a.ID, b.ID) })
	return st
}

func mountStatus(w *worker, m *mountState) MountStatus {
	ms := MountStatus{ID: m.id, WorkerID: w.id, Mountpoint: m.mountpoint, State: MountUnheld, Verification: string(daemonapi.Unverified)}
	w.mu.Lock()
	if v := m.verdict; v != nil {
		ms.Verification, ms.DiffID = string(v.State), v.DiffID
	}
	w.mu.Unlock()
	ms.ImageRef = m.layer.ImageRef
	ms.LayerDigest = m.layer.LayerDigest.String()
	if m.conn != nil {
		if m.conn.CanTakeOver() {
			ms.State = MountServing
		}
		init := m.conn.Init()
		ms.Resend = init.SupportsResend()
		if major, minor, err := init.KernelProtocol(); err == nil {
			ms.Protocol = fmt.Sprintf("%d.%d", major, minor)
		}
	}
	return ms
}

// processRSS reads VmRSS from /proc/<pid>/status.
func processRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // "1234 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line in /proc/%d/status", pid)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time: 100 on
// every Linux architecture the kernel exports to user space.
const clockTicks = 100

// ticksToTime turns a process start time in clock ticks since boot (what
// the registry keeps, since it identifies a process across pid reuse) into
// wall time, from the boot time in /proc/stat. Zero when unknown.
func ticksToTime(ticks uint64) time.Time {
	if ticks == 0 {
		return time.Time{}
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / clockTicks)
		}
	}
	return time.Time{}
}

// Status counts what the supervisor runs, for systemd's STATUS= line.
type Status struct {
	Workers int // running workers
	Mounts  int // layers they serve
}

// Status returns the current counts. It takes the locks every mount and
// takeover takes, so a watchdog that calls it notices a deadlock.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Workers: len(s.workers)}
	for _, w := range s.workers {
		w.mu.Lock()
		st.Mounts += len(w.mounts)
		w.mu.Unlock()
	}
	return st
}
