package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// signalWorker sends sig to pid, which must be a worker (or the standby)
// this supervisor started or adopted. It refuses every pid that cannot be
// one: kill(2) reads 0 as the caller's own process group and -1 as every
// process, 1 is init, and a worker is always the leader of a session of its
// own (spawned with Setsid), so neither the snapshotter itself nor a process
// of its group. A bug that lost a worker's pid must not stop or kill the
// snapshotter (or, in a test, the test runner's whole process group).
func signalWorker(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("refusing to send %v to pid %d: not a worker's pid: %w", sig, pid, errdefs.ErrInvalidArgument)
	}
	if pid == os.Getpid() {
		return fmt.Errorf("refusing to send %v to pid %d: the snapshotter itself: %w", sig, pid, errdefs.ErrInvalidArgument)
	}
	sid, err := unix.Getsid(pid)
	if err != nil {
		return fmt.Errorf("failed to send %v to pid %d: %w", sig, pid, err)
	}
	if sid != pid {
		return fmt.Errorf("refusing to send %v to pid %d: not a session leader, as every worker is: %w", sig, pid, errdefs.ErrInvalidArgument)
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("failed to send %v to pid %d: %w", sig, pid, err)
	}
	return nil
}

// killWorker is signalWorker for callers with nothing better to do than
// log a failure. A process that is gone already (ESRCH) is what the signal
// was for.
func killWorker(ctx context.Context, pid int, sig syscall.Signal) {
	if err := signalWorker(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		log.G(ctx).WithError(err).WithField("pid", pid).Error("failed to signal a worker")
	}
}
