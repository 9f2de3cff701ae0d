package ctl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/containerd/errdefs"
)

// defaultShutdownWait bounds the wait for the snapshotter to be gone: its
// own stop is bounded by about 20 s (docs/debug.md).
const defaultShutdownWait = 30 * time.Second

func shutdownCommand() *command {
	return &command{
		name:    "shutdown",
		summary: "stop the snapshotter, keeping what running containers use (or drain with --unmount-all)",
		help: `Stops the snapshotter as SIGTERM does: the layers no container uses are
unmounted and their workers stopped; the workers of layers in use keep
serving and the next start re-adopts them. With --unmount-all the node is
drained: every lazy layer is detached and every worker stopped, and
containers still reading a lazy layer get errors. Waits until the
snapshotter is gone. Under systemd, a service that is not stopped through
systemctl is restarted by it (Restart=on-failure does not apply to a clean
exit, which this is).`,
		setup: func(fs *flag.FlagSet) action {
			all := fs.Bool("unmount-all", false, "drain: detach every lazy layer, also those running containers use")
			wait := fs.Duration("timeout", defaultShutdownWait, "how long to wait for the snapshotter to be gone")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				c, ctx, cancel, err := a.mgmtWithin(ctx, *wait)
				if err != nil {
					return err
				}
				defer cancel()
				res, err := c.Shutdown(ctx, *all)
				if err != nil {
					return err
				}
				if err := waitGone(ctx, res.PID); err != nil {
					return err
				}
				what := "layers in use stay served by their workers"
				if *all {
					what = "every lazy layer detached"
				}
				fmt.Fprintf(a.stdout, "snapshotter stopped; %s\n", what)
				return nil
			}
		},
	}
}

// waitGone waits until the snapshotter's process is gone: its API closes
// first, while it still unmounts and stops workers. A zombie is gone.
func waitGone(ctx context.Context, pid int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if i := bytes.LastIndexByte(data, ')'); err == nil && i >= 0 && bytes.HasPrefix(bytes.TrimSpace(data[i+1:]), []byte("Z")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("snapshotter still answers after the shutdown request: %w: %w", errdefs.ErrUnavailable, ctx.Err())
		case <-tick.C:
		}
	}
}
