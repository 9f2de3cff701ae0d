package supervisor

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// worker is a running lazyfsd, spawned by this supervisor or adopted from an
// earlier run.
type worker struct {
	id        string
	pid       int
	startTime uint64
	apiSock   string
	ctlSock   string
	api       *daemonapi.Client
	exited    chan struct{} // closed when the process is gone
	logr      *os.File      // read end of a spawned worker's stderr pipe; nil if adopted

	mu       sync.Mutex
	control  *daemonapi.ControlClient // one controller per worker: this supervisor
	mounts   map[string]*mountState   // by mount id
	stopping bool                     // exit expected: do not remount
}

// mountState is one FUSE mount served by a worker.
type mountState struct {
	id         string
	mountpoint string
	labels     map[string]string
	// fd is the supervisor's copy of the /dev/fuse fd, held for the
	// mount's life and never read; -1 for a mount adopted from an earlier
	// run (its fd died with that snapshotter until the failover work
	// re-collects it).
	fd   int
	init daemonapi.InitState
}

func (w *worker) record() record {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec := record{ID: w.id, PID: w.pid, StartTime: w.startTime, APISocket: w.apiSock, ControlSocket: w.ctlSock, Mounts: map[string]mountRecord{}}
	for id, m := range w.mounts {
		rec.Mounts[id] = mountRecord{Mountpoint: m.mountpoint, Labels: m.labels}
	}
	return rec
}

// closeClients lets go of a worker that outlives this supervisor (Close
// with keepWorkers): its connections, its log pipe (which ends copyLog),
// and the supervisor's fd copies of its mounts. The worker then holds the
// only copies, as after a crash of the snapshotter: if it dies later, its
// readers get errors instead of waiting on a connection kept alive here.
func (w *worker) closeClients() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.control != nil {
		w.control.Close()
		w.control = nil
	}
	if w.logr != nil {
		w.logr.Close()
	}
	for _, m := range w.mounts {
		m.closeFD()
	}
	w.api.Close()
}

// closeFD drops the supervisor's copy of a mount's fd. Once the worker's
// copy is gone too, the kernel aborts the connection and readers get an
// error instead of waiting for a successor.
func (m *mountState) closeFD() {
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}
