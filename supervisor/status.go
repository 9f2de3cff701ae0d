package supervisor

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
