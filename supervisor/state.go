package supervisor

import (
	"slices"
	"strings"
	"time"
)

// State is where a worker is in its life:
//
//	starting → ready ⇄ serving → stopping → exited
//	                    serving → taking_over → (successor) serving | failed
//
// ready is a worker with no mount (idle); taking_over, a dead worker whose
// connections are being handed to a successor; failed, one whose takeover
// was given up (a crash loop): its mounts answer errors.
type State string

// Worker states.
const (
	StateStarting   State = "starting"
	StateReady      State = "ready"
	StateServing    State = "serving"
	StateTakingOver State = "taking_over"
	StateStopping   State = "stopping"
	StateExited     State = "exited"
	StateFailed     State = "failed"
)

// WorkerState describes a worker id: its current process and its history
// (restarts and last exit are kept across its successors).
type WorkerState struct {
	ID        string
	PID       int
	State     State
	StartedAt time.Time // of the current process
	Mounts    int
	// Restarts counts the successors that took the id over (crashes,
	// hangs and planned replacements).
	Restarts int
	// LastExitCause is killed, signal, exit, hung, planned or unknown;
	// LastExit says more (the signal, the status).
	LastExitCause string
	LastExit      string
	LastExitAt    time.Time
}

// history is what the supervisor remembers of a worker id across its
// processes.
type history struct {
	restarts   int
	lastCause  string
	lastDetail string
	lastAt     time.Time
	failed     bool
}

// noteExit records how a process of id ended; successor says whether a
// successor takes (or took) its place.
func (s *Supervisor) noteExit(id, cause, detail string, successor bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.historyOf(id)
	h.lastCause, h.lastDetail, h.lastAt = cause, detail, time.Now()
	if successor {
		h.restarts++
	}
}

// noteFailed records that id's takeover was given up.
func (s *Supervisor) noteFailed(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.historyOf(id).failed = true
}

// historyOf returns id's history; the caller holds s.mu.
func (s *Supervisor) historyOf(id string) *history {
	h, ok := s.history[id]
	if !ok {
		h = &history{}
		s.history[id] = h
	}
	return h
}

// state derives w's state from what the supervisor knows of it.
func (w *worker) state() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.takingOver:
		return StateTakingOver
	case w.isExited():
		return StateExited
	case w.stopping:
		return StateStopping
	case w.control == nil:
		return StateStarting
	case len(w.mounts) > 0:
		return StateServing
	default:
		return StateReady
	}
}

// WorkerStates lists every worker id the supervisor runs or ran, sorted by
// id: the current process of each, and the failed ones.
func (s *Supervisor) WorkerStates() []WorkerState {
	s.mu.Lock()
	workers := make(map[string]*worker, len(s.workers))
	for id, w := range s.workers {
		workers[id] = w
	}
	hist := make(map[string]history, len(s.history))
	for id, h := range s.history {
		hist[id] = *h
	}
	s.mu.Unlock()

	var out []WorkerState
	for id, h := range hist {
		if _, ok := workers[id]; !ok && h.failed {
			out = append(out, WorkerState{ID: id, State: StateFailed, Restarts: h.restarts,
				LastExitCause: h.lastCause, LastExit: h.lastDetail, LastExitAt: h.lastAt})
		}
	}
	for id, w := range workers {
		h := hist[id]
		w.mu.Lock()
		started, mounts := w.startedAt, len(w.mounts)
		w.mu.Unlock()
		out = append(out, WorkerState{
			ID: id, PID: w.pid, State: w.state(), StartedAt: started, Mounts: mounts,
			Restarts: h.restarts, LastExitCause: h.lastCause, LastExit: h.lastDetail, LastExitAt: h.lastAt,
		})
	}
	slices.SortFunc(out, func(a, b WorkerState) int { return strings.Compare(a.ID, b.ID) })
	return out
}
