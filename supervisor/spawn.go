package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/metrics"
)

// spawn starts a worker and waits until it answers on both channels. The
// caller, holding id's lock, registers and records it. A successor of a
// live worker (a planned replacement) binds the same socket paths: the old
// worker keeps the sockets it listens on, unlinked, until it is killed.
func (s *Supervisor) spawn(ctx context.Context, id string) (_ *worker, err error) {
	ctx = s.logger(ctx, id)
	dir := filepath.Join(s.opts.RunDir, "workers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker %s: failed to create socket dir: %w", id, err)
	}
	w := &worker{
		id:      id,
		apiSock: filepath.Join(dir, "api.sock"),
		ctlSock: filepath.Join(dir, "control.sock"),
		exited:  make(chan struct{}),
		mounts:  map[string]*mountState{},
	}
	args := append([]string{
		"--id", id,
		"--api-socket", w.apiSock,
		"--control-socket", w.ctlSock,
		"--root", s.opts.Root,
		"--log-level", s.opts.LogLevel,
	}, s.opts.WorkerArgs...)
	if s.opts.Mode == PerImage {
		// A per-image worker has nothing to do once its image's last layer
		// is unmounted.
		args = append(args, "--exit-when-idle")
	}
	cmd := exec.Command(s.opts.Binary, args...)
	// Setsid and no parent-death signal: a worker outlives a crash or an
	// upgrade of the snapshotter, so running containers keep reading.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// stdout and stderr go through a pipe that copyLog drains into the
	// worker's rotated log.
	logr, logw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("worker %s: failed to create log pipe: %w", id, err)
	}
	cmd.Stdout = logw
	cmd.Stderr = logw
	// The worker writes a byte to this pipe once its sockets are bound
	// (and closes it, or dies): no polling, so a successor serves sooner.
	readyr, readyw, err := os.Pipe()
	if err != nil {
		logw.Close()
		logr.Close()
		return nil, fmt.Errorf("worker %s: failed to create ready pipe: %w", id, err)
	}
	cmd.ExtraFiles = []*os.File{readyw}
	cmd.Args = append(cmd.Args, "--ready-fd", "3")
	if err := cmd.Start(); err != nil {
		logw.Close()
		logr.Close()
		readyr.Close()
		readyw.Close()
		return nil, fmt.Errorf("worker %s: failed to start %s: %w", id, s.opts.Binary, err)
	}
	logw.Close() // the worker has its own copies
	readyw.Close()
	defer readyr.Close()
	w.pid = cmd.Process.Pid
	w.servedAt = time.Now().UnixNano()
	w.startedAt = time.Now()
	w.logr = logr
	w.startTime, _ = processStartTime(w.pid)
	w.api = daemonapi.NewClient(w.apiSock, id)
	log.G(ctx).WithField("pid", w.pid).Info("worker started")
	// A pidfd, not a bare cmd.Wait, watches the worker: Close with
	// keepWorkers must be able to stop watching a worker that lives on.
	pidfd, err := unix.PidfdOpen(w.pid, 0)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		logr.Close()
		return nil, fmt.Errorf("worker %s: failed to watch pid %d: %w", id, w.pid, err)
	}

	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.copyLog(id, logr)
	}()
	go func() {
		defer s.wg.Done()
		defer unix.Close(pidfd)
		if !waitPidfd(s.ctx, pidfd) {
			return // supervisor closing; the worker lives on
		}
		w.waitErr = cmd.Wait()
		close(w.exited)
		s.handleExit(s.logger(s.ctx, id), w)
	}()
	defer func() {
		if err != nil {
			// Marked stopping first, so that its watcher does not take
			// this exit for a crash.
			w.mu.Lock()
			w.stopping = true
			w.mu.Unlock()
			cmd.Process.Kill()
		}
	}()

	started := time.Now()
	if err := s.waitReady(ctx, w, readyr); err != nil {
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
		select {
		case <-w.exited:
			return fmt.Errorf("worker %s exited before it was ready; see %s", w.id, s.logPath(w.id))
		case <-ctx.Done():
			return fmt.Errorf("worker %s not ready after %s: %w", w.id, s.opts.ReadyTimeout, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func (s *Supervisor) logPath(id string) string {
	return filepath.Join(s.opts.LogDir, "daemons", id+".log")
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
