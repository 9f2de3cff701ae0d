package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// logTailBytes bounds how much of a log is printed: containerd at debug
// level writes megabytes, and the end is where a failure shows.
const logTailBytes = 64 << 10

// process is one child process whose stdout and stderr go to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	state   *os.ProcessState
}

// startProcess runs cmd with its output appended to logPath.
//
// The child gets SIGTERM when the test binary dies (a panic or a timeout
// skips every cleanup), so daemons do not outlive it. Linux sends that signal
// when the thread that forked the child exits, not the process, and the Go
// runtime may retire threads; so the fork happens on a goroutine that keeps
// its thread locked until the child has exited.
func startProcess(name, logPath string, cmd *exec.Cmd) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failed to open log of %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group keeps a terminal's Ctrl-C from reaching it before
	// the harness has stopped it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is never unlocked: when this goroutine returns, the
		// runtime discards it, which is harmless once the child is gone.
		err := cmd.Start()
		logFile.Close()
		started <- err
		if err != nil {
			return
		}
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", name, err)
	}
	return p, nil
}

// pid returns the child's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the child's exit status, -1 when a signal ended it or it
// still runs.
func (p *process) exitCode() int {
	if !p.exited() {
		return -1
	}
	return p.state.ExitCode()
}

// wait waits at most timeout for the child to exit.
func (p *process) wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// signal sends sig unless the child has already exited.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to signal %s (pid %d): %w", p.name, p.pid(), err)
	}
	return nil
}

// stop sends SIGTERM and waits up to timeout; a child still running then is
// killed. It reports the exit code and whether the child exited in time.
func (p *process) stop(timeout time.Duration) (code int, inTime bool) {
	if p.exited() {
		return p.exitCode(), true
	}
	if err := p.signal(syscall.SIGTERM); err == nil && p.wait(timeout) {
		return p.exitCode(), true
	}
	p.kill()
	return p.exitCode(), false
}

// kill sends SIGKILL and waits for the child to be reaped.
func (p *process) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// exitError describes an unexpected exit, with the end of the log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v):\n%s", p.name, p.state, logTail(p.logPath))
}

// logTail returns the last logTailBytes of a log file, or why it cannot.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	prefix := ""
	if fi.Size() > logTailBytes {
		if _, err := f.Seek(-logTailBytes, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot seek %s: %v)", path, err)
		}
		prefix = fmt.Sprintf("[... first %d bytes left out ...]\n", fi.Size()-logTailBytes)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return prefix + string(b)
}

// Tracked is a started helper: a registry, a containerd or a snapshotter.
type Tracked interface {
	// Logs lists the log files to print when a test fails.
	Logs() []string
	// Close stops the helper and whatever it left behind (child processes,
	// mounts), then removes the directories the harness created for it.
	Close() error
	// shutdown is Close without removing anything, so that the logs can be
	// printed complete, after the last process wrote to them.
	shutdown() error
}

// Track tears x down when t ends, printing its logs first if t failed.
// Cleanups run last-in first-out: track helpers in the order they depend on
// each other (registry, snapshotter, containerd) so that containerd stops
// first.
func Track(t testing.TB, x Tracked) {
	t.Helper()
	t.Cleanup(func() {
		if err := x.shutdown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if t.Failed() {
			for _, path := range x.Logs() {
				t.Logf("==== %s ====\n%s", path, logTail(path))
			}
		}
		if err := x.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
}
