package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/layout"
	"github.com/lazyfs/lazyfs/metrics"
)

// spawn starts a worker for id and waits until it answers on both
// channels. The caller, holding id's lock, registers and records it. The
// standby process is used when there is one (it has done its start-up work
// already), unless fresh is set: a planned replacement may be an upgrade,
// which must run the binary as it is now. A successor of a live worker (a
// planned replacement) binds the same socket paths: the old worker keeps the
// sockets it listens on, unlinked, until it is killed.
func (s *Supervisor) spawn(ctx context.Context, id string, fresh bool) (_ *worker, err error) {
	ctx = s.logger(ctx, id)
	run := layout.RunDir(s.opts.RunDir)
	dir := run.Worker(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker %s: failed to create socket dir: %w", id, err)
	}
	w := &worker{
		id:      id,
		apiSock: run.WorkerAPISocket(id),
		ctlSock: run.WorkerControlSocket(id),
		mounts:  map[string]*mountState{},
	}
	w.api = daemonapi.NewClient(w.apiSock, id)
	var p *process
	if !fresh {
		p = s.takeStandby(ctx, w)
	}
	if p == nil {
		if p, err = s.startProcess(w); err != nil {
			return nil, err
		}
	}
	defer p.readyr.Close()
	// w.pid, w.logr and w.exited are set: startProcess or takeStandby set
	// them before p's reaper could hand w to handleExit.
	w.startTime, _ = processStartTime(w.pid)
	w.servedAt = time.Now().UnixNano()
	w.startedAt = time.Now()
	log.G(ctx).WithField("pid", w.pid).WithField("standby", p.standby).Info("worker started")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.copyLog(id, w.logr)
	}()
	defer func() {
		if err != nil {
			// Marked stopping first, so that its watcher does not take
			// this exit for a crash.
			w.mu.Lock()
			w.stopping = true
			w.mu.Unlock()
			killWorker(ctx, w.pid, syscall.SIGKILL)
		}
	}()

	started := time.Now()
	if err := s.waitReady(ctx, w, p.readyr); err != nil {
		return nil, err
	}
	metrics.WorkerReadyDuration.Observe(time.Since(started).Seconds())
	ctl, err := daemonapi.DialControl(ctx, w.ctlSock)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", id, err)
	}
	w.control = ctl
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchHealth(w)
	}()
	return w, nil
}

// process is a started lazyfsd: a worker with its identity, or the standby
// waiting for one.
type process struct {
	pid     int
	standby bool
	logr    *os.File      // read end of its stdout and stderr pipe
	readyr  *os.File      // read end of its ready pipe
	idw     *os.File      // write end of its identity pipe; standby only
	exited  chan struct{} // closed once it is gone (and reaped)

	mu   sync.Mutex
	w    *worker // the worker it became; nil while a standby
	dead bool
}

// startProcess starts lazyfsd for w, or, with w nil, the standby: a process
// that does its start-up work now and waits for an identity (worker id and
// sockets) on a pipe, so that a successor takes over without paying for
// exec and runtime initialisation.
func (s *Supervisor) startProcess(w *worker) (_ *process, err error) {
	// Its whole configuration is the file New wrote; a worker started now
	// has its id too (its sockets follow from it), a standby gets both later.
	args := []string{"--config", layout.RunDir(s.opts.RunDir).WorkerConfig()}
	if w != nil {
		args = append(args, "--id", w.id)
	}
	cmd := exec.Command(s.opts.Binary, args...)
	// Setsid and no parent-death signal: a worker outlives a crash or an
	// upgrade of the snapshotter, so running containers keep reading.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File) {
		if err != nil {
			return nil, nil
		}
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w
	}
	// stdout and stderr go through a pipe that copyLog drains into the
	// worker's rotated log.
	logr, logw := pipe()
	// The worker writes a byte to this pipe once its sockets are bound
	// (and closes it, or dies): no polling, so a successor serves sooner.
	readyr, readyw := pipe()
	idr, idw := pipe()
	if err != nil {
		return nil, fmt.Errorf("failed to create a worker's pipes: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.ExtraFiles = []*os.File{readyw}
	cmd.Args = append(cmd.Args, "--ready-fd", "3")
	p := &process{standby: w == nil, w: w, logr: logr, readyr: readyr, exited: make(chan struct{})}
	if p.standby {
		// It reads its identity here; EOF (this snapshotter died) ends it.
		cmd.ExtraFiles = append(cmd.ExtraFiles, idr)
		cmd.Args = append(cmd.Args, "--standby-fd", "4")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", s.opts.Binary, err)
	}
	p.pid = cmd.Process.Pid
	// A pidfd, not a bare cmd.Wait, watches the process: Close with
	// keepWorkers must be able to stop watching a worker that lives on.
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("failed to watch pid %d: %w", p.pid, err)
	}
	if w != nil {
		// Before the reaper starts: a worker that dies at once is handed
		// to handleExit with its pid.
		w.pid, w.logr, w.exited = p.pid, p.logr, p.exited
	}
	// Kept: the read ends, and the identity pipe's write end.
	files = []*os.File{logw, readyw, idr}
	if p.standby {
		p.idw = idw
	} else {
		files = append(files, idw)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer unix.Close(pidfd)
		if !waitPidfd(s.ctx, pidfd) {
			return // supervisor closing; the worker lives on
		}
		s.reap(p, cmd)
	}()
	return p, nil
}

// reap collects p's exit, and hands it to handleExit if p became a worker.
func (s *Supervisor) reap(p *process, cmd *exec.Cmd) {
	err := cmd.Wait()
	p.mu.Lock()
	w := p.w
	p.dead = true
	p.mu.Unlock()
	if w != nil {
		w.waitErr = err // before exited is closed
	}
	close(p.exited)
	if w != nil {
		s.handleExit(s.logger(s.ctx, w.id), w)
		return
	}
	s.standbyGone(p, err)
}

// waitReady waits until the worker says on the ready pipe that its sockets
// are bound, then checks that its API answers, until the worker exits or
// the ready timeout passes: one deadline for the whole wait, so a worker that
// never answers cannot stall a pull.
func (s *Supervisor) waitReady(ctx context.Context, w *worker, ready *os.File) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	readyc := make(chan struct{})
	go func() {
		// One byte, or EOF when the worker died first (or an older
		// lazyfsd closed it unused): either way, polling decides.
		ready.Read(make([]byte, 1))
		close(readyc)
	}()
	defer ready.SetReadDeadline(aLongTimeAgo)
	select {
	case <-readyc:
	case <-w.exited:
		return fmt.Errorf("worker %s exited before it was ready; see %s", w.id, s.logPath(w.id))
	case <-ctx.Done():
		return fmt.Errorf("worker %s not ready after %s: %w", w.id, s.opts.ReadyTimeout, ctx.Err())
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// last is the last answer's fault; a call the deadline cut short
	// tells nothing new.
	var last error
	for {
		info, err := w.api.Info(ctx)
		if err == nil && info.PID == w.pid {
			return nil
		}
		if err == nil {
			// The predecessor of a planned replacement answers until
			// this worker has bound the same path.
			err = fmt.Errorf("api socket answered by pid %d, not %d", info.PID, w.pid)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-w.exited:
			return fmt.Errorf("worker %s exited before it was ready; see %s", w.id, s.logPath(w.id))
		case <-ctx.Done():
			return fmt.Errorf("worker %s not ready after %s: %w", w.id, s.opts.ReadyTimeout, errors.Join(last, ctx.Err()))
		case <-tick.C:
		}
	}
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Supervisor) logPath(id string) string {
	return layout.LogDir(s.opts.LogDir).WorkerLog(id)
}

// newLogPipe hands a re-adopted worker a new stderr: the write end of a
// pipe whose read end copyLog drains into the worker's log file.
func (s *Supervisor) newLogPipe(ctx context.Context, w *worker, ctl *daemonapi.ControlClient) error {
	r, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	err = ctl.ReplaceStderr(ctx, int(wr.Fd()))
	wr.Close() // the worker has its own copy now, or none
	if err != nil {
		r.Close()
		return err
	}
	w.logr = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.copyLog(w.id, r)
	}()
	return nil
}

// copyLog copies a worker's output into <log_dir>/daemons/<id>.log until the
// worker closes it. One lumberjack.Logger per worker id serves all of that
// id's restarts: its background goroutine is never stopped.
func (s *Supervisor) copyLog(id string, r io.ReadCloser) {
	defer r.Close()
	s.mu.Lock()
	l, ok := s.logs[id]
	if !ok {
		l = &lumberjack.Logger{
			Filename:   s.logPath(id),
			MaxSize:    s.opts.Logs.MaxSizeMB,
			MaxBackups: s.opts.Logs.MaxBackups,
			MaxAge:     s.opts.Logs.MaxAgeDays,
			Compress:   s.opts.Logs.Compress,
		}
		s.logs[id] = l
	}
	s.mu.Unlock()
	// os.ErrClosed: the supervisor closed the pipe itself (Close with
	// keepWorkers), which is not a failure.
	if _, err := io.Copy(l, r); err != nil && !errors.Is(err, os.ErrClosed) {
		log.G(s.ctx).WithError(err).WithField("worker_id", id).Warn("worker log copy stopped")
	}
}
