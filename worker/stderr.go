package worker

import (
	"context"
	"fmt"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ReplaceStderr makes fd the process's stderr and stdout
// (daemonapi.StderrReplacer): a snapshotter that re-adopts this worker after
// its own restart hands over a new log pipe, since the one this process was
// started with died with the old snapshotter. dup3 replaces fd 2 atomically,
// so the Go runtime's own writes (a panic, a SIGQUIT goroutine dump) reach
// the new pipe too.
func (w *Worker) ReplaceStderr(ctx context.Context, fd int) error {
	defer unix.Close(fd)
	for _, target := range []int{2, 1} {
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("failed to make fd %d the new fd %d: %w", fd, target, err)
		}
	}
	log.G(ctx).Info("stderr handed over by a new snapshotter")
	return nil
}
