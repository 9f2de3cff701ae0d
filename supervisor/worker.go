package supervisor

import (
	"os"
	"sync"
	"time"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layer"
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
	stopping bool                     // exit expected: no takeover
	hung     bool                     // killed for missing its health checks
	// takingOver: dead, its connections being handed to a successor.
	takingOver bool
	startedAt  time.Time // when this process was started (or adopted)
	servedAt   int64     // unix nanos when it began serving its mounts (crash-loop accounting)
	// waitErr is how the process ended (cmd.Wait's error; nil for an
	// adopted worker, which is not our child); set before exited is closed.
	waitErr error
}

// mountState is one FUSE mount served by a worker. It moves from a dead
// worker to its successor with its fd and INIT state.
type mountState struct {
	id         string
	mountpoint string
	layer      layer.Layer
	// conn holds the supervisor's copy of the /dev/fuse fd and the INIT
	// state: as long as the fd is open, the kernel keeps the connection
	// and its readers wait for a successor when the worker dies. No copy
	// is held for a mount of an earlier run whose worker could not hand it
	// over.
	conn *failover.Conn
	// verdict is the snapshotter's last word on the layer's identity,
	// told again to a successor; nil while unverified. Under the worker's mu.
	verdict *daemonapi.VerdictRequest
}

func (w *worker) record() record {
	w.mu.Lock()
	defer w.mu.Unlock()
	rec := record{Version: recordVersion, ID: w.id, PID: w.pid, StartTime: w.startTime, APISocket: w.apiSock, ControlSocket: w.ctlSock, Mounts: map[string]mountRecord{}}
	for id, m := range w.mounts {
		l := m.layer
		l.NextLayers = nil // a pull's hint: a restore has no use for it
		rec.Mounts[id] = mountRecord{Mountpoint: m.mountpoint, Layer: &l, Init: m.conn.Init()}
	}
	return rec
}

// mountList returns the worker's mounts.
func (w *worker) mountList() []*mountState {
	w.mu.Lock()
	defer w.mu.Unlock()
	mounts := make([]*mountState, 0, len(w.mounts))
	for _, m := range w.mounts {
		mounts = append(mounts, m)
	}
	return mounts
}

// controlClient returns the worker's control connection, nil if there is none.
func (w *worker) controlClient() *daemonapi.ControlClient {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.control
}

// isExited tells whether the worker's process is gone.
func (w *worker) isExited() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// closeClients lets go of a worker that outlives this supervisor (Close
// with keepWorkers): its connections, its log pipe (which ends copyLog),
// and the supervisor's fd copies of its mounts. The worker then holds the
// only copies (and the systemd fd store, under systemd): the next
// snapshotter collects them again.
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
		m.conn.Close()
	}
	w.api.Close()
}
