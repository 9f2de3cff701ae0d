package supervisor

import (
	"context"
	"encoding/json"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// standbyRefillGap is the wait before a new standby after one died without
// being used, so that a binary that cannot start does not make the
// supervisor spin. A standby that was used is replaced at once.
const standbyRefillGap = time.Second

// standbyUsedGap is the wait before a new standby after one became a
// worker: its start (exec and the Go runtime's, tens of milliseconds of
// CPU) must not compete with the successor answering the reads that
// waited through the takeover.
const standbyUsedGap = 250 * time.Millisecond

// takeStandby turns the standby process, if there is one, into worker w:
// it is sent w's identity, binds w's sockets and then says it is ready like
// any worker. A successor taken from the standby skips exec and the Go
// runtime's start-up, the largest part of a takeover. It returns nil when
// there is no usable standby; a new one is started in the background.
func (s *Supervisor) takeStandby(ctx context.Context, w *worker) *process {
	s.mu.Lock()
	p := s.standby
	s.standby = nil
	if p != nil {
		s.standbyUsed = time.Now()
	}
	s.mu.Unlock()
	defer s.refillStandby()
	if p == nil {
		return nil
	}
	defer p.idw.Close()
	id, _ := json.Marshal(daemonapi.Identity{ID: w.id, APISocket: w.apiSock, ControlSocket: w.ctlSock})
	if _, err := p.idw.Write(append(id, '\n')); err != nil {
		log.G(ctx).WithError(err).Warn("standby worker unusable; starting a worker")
		killWorker(ctx, p.pid, syscall.SIGKILL)
		return nil
	}
	// From here its reaper reports its exit as w's. If it died already,
	// spawn starts another process for w instead.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return nil
	}
	// Under p.mu, which the reaper takes to find w.
	w.pid, w.logr, w.exited = p.pid, p.logr, p.exited
	p.w = w
	return p
}

// refillStandby starts a new standby in the background unless there is
// one, one is being started, or the supervisor is closing. Only failover
// needs it: with recover_policy remount, start-up time costs no reader.
func (s *Supervisor) refillStandby() {
	if s.opts.RecoverPolicy != Failover {
		return
	}
	s.mu.Lock()
	if s.closing || s.standby != nil || s.refilling {
		s.mu.Unlock()
		return
	}
	s.refilling = true
	wait := max(time.Until(s.standbyDied.Add(standbyRefillGap)), time.Until(s.standbyUsed.Add(standbyUsedGap)))
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(wait):
		case <-s.tctx.Done():
		}
		var p *process
		var err error
		if s.tctx.Err() == nil {
			p, err = s.startProcess(nil)
		}
		s.mu.Lock()
		s.refilling = false
		closing := s.closing
		if p != nil && !closing {
			s.standby = p
		}
		s.mu.Unlock()
		switch {
		case err != nil:
			log.G(s.ctx).WithError(err).Warn("failed to start a standby worker; successors start from scratch")
		case p != nil && closing:
			p.idw.Close() // it exits on EOF
		case p != nil:
			log.G(s.ctx).WithField("pid", p.pid).Debug("standby worker started")
		}
	}()
}

// standbyGone is called when the standby process exited before it got an
// identity.
func (s *Supervisor) standbyGone(p *process, err error) {
	s.mu.Lock()
	mine := s.standby == p
	if mine {
		s.standby = nil
		s.standbyDied = time.Now()
	}
	closing := s.closing
	s.mu.Unlock()
	p.idw.Close()
	p.logr.Close()
	p.readyr.Close()
	if mine && !closing {
		log.G(s.ctx).WithError(err).WithField("pid", p.pid).Warn("standby worker exited; starting another")
		s.refillStandby()
	}
}

// stopStandby ends the standby (Close): closing its identity pipe makes it
// exit.
func (s *Supervisor) stopStandby() {
	s.mu.Lock()
	p := s.standby
	s.standby = nil
	s.mu.Unlock()
	if p != nil {
		p.idw.Close()
	}
}
