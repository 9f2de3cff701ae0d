package supervisor

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
