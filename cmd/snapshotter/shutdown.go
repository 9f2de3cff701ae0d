package main

import (
	"context"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/supervisor"
)

// supervisorStopTimeout bounds the supervisor's part of a shutdown: workers
// that do not exit in time are killed (supervisor.Shutdown).
const supervisorStopTimeout = 8 * time.Second

// shutdownSupervisor unmounts the layers no container uses and stops their
// workers; the workers of layers in use keep serving for the next start,
// unless [shutdown] unmount_all drains the node.
func shutdownSupervisor(ctx context.Context, sup *supervisor.Supervisor, cfg config.Config, drain bool) {
	if cfg.KeepWorkersOnExit {
		log.G(ctx).Warn("keep_workers_on_exit is deprecated and ignored: a stop keeps the workers of layers in use anyway; remove it from the config")
	}
	mode := supervisor.KeepBusy
	if drain {
		log.G(ctx).Warn("draining (shutdown.unmount_all or snapshotterctl shutdown --unmount-all): unmounting every lazy layer, containers still using one get errors")
		mode = supervisor.UnmountAll
	}
	ctx, cancel := context.WithTimeout(ctx, supervisorStopTimeout)
	defer cancel()
	kept, err := sup.Shutdown(ctx, mode)
	if err != nil {
		log.G(ctx).WithError(err).Error("failed to stop workers cleanly")
	}
	for _, k := range kept {
		log.G(ctx).WithField("worker_id", k.ID).WithField("pid", k.PID).WithField("mounts", k.Mounts).Info("worker kept serving layers in use; the next start re-adopts it")
	}
	log.G(ctx).WithField("kept_workers", len(kept)).Info("workers stopped")
}
