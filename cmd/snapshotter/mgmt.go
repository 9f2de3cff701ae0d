package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layout"
	"github.com/lazyfs/lazyfs/mgmtapi"
	"github.com/lazyfs/lazyfs/supervisor"
)

// startMgmtServer serves the management API (snapshotterctl) on
// <run_dir>/api.sock.
// stops receives the management API's shutdown requests: true drains.
func startMgmtServer(ctx context.Context, runDir string, sup *supervisor.Supervisor, stops chan<- bool) (*mgmtapi.Server, error) {
	return mgmtapi.Listen(ctx, layout.RunDir(runDir).MgmtSocket(), mgmtapi.NewServer(mgmtBackend{sup: sup, stops: stops}))
}

// mgmtBackend answers the management API from the supervisor.
type mgmtBackend struct {
	sup   *supervisor.Supervisor
	stops chan<- bool // to serve's main loop: stop (true: drain)
}

// Shutdown hands the request to serve's main loop, which stops as on
// SIGTERM. A second request while one is pending changes nothing.
func (b mgmtBackend) Shutdown(_ context.Context, unmountAll bool) (int, error) {
	select {
	case b.stops <- unmountAll:
	default:
	}
	return os.Getpid(), nil
}

var _ mgmtapi.Backend = mgmtBackend{}

func (b mgmtBackend) Workers(context.Context) ([]mgmtapi.Worker, error) {
	var out []mgmtapi.Worker
	for _, w := range b.sup.WorkerList() {
		out = append(out, wireWorker(w))
	}
	return out, nil
}

func (b mgmtBackend) Worker(_ context.Context, id string) (mgmtapi.Worker, error) {
	w, err := b.sup.WorkerStatus(id)
	if err != nil {
		return mgmtapi.Worker{}, err
	}
	return wireWorker(w), nil
}

func (b mgmtBackend) Mounts(context.Context) ([]mgmtapi.Mount, error) {
	var out []mgmtapi.Mount
	for _, w := range b.sup.WorkerList() {
		for _, m := range w.Mounts {
			out = append(out, wireMount(m))
		}
	}
	return out, nil
}

func (b mgmtBackend) Restart(ctx context.Context, id string) (mgmtapi.Restart, error) {
	old, err := b.sup.WorkerStatus(id)
	if err != nil {
		return mgmtapi.Restart{}, err
	}
	start := time.Now()
	pid, err := b.sup.Replace(ctx, id)
	if err != nil && pid == 0 {
		return mgmtapi.Restart{}, err
	}
	res := mgmtapi.Restart{ID: id, OldPID: old.PID, NewPID: pid, Duration: time.Since(start)}
	// pid != 0 with an error: replaced, but the kernel may not resend
	// what the old worker held. The operator must hear of it.
	return res, err
}

func (b mgmtBackend) LogPath(_ context.Context, id string) (string, error) {
	path := b.sup.WorkerLogPath(id)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("worker %s has no log at %s: %w", id, path, errdefs.ErrNotFound)
	}
	return path, nil
}

func (b mgmtBackend) Status(context.Context) (mgmtapi.Status, error) {
	release, resend, err := failover.KernelRelease()
	kernel := mgmtapi.Kernel{Release: release, FUSENotifyResend: resend}
	if err != nil {
		kernel.Error = err.Error()
	}
	return statusOf(string(b.sup.Mode()), kernel, b.sup.WorkerList()), nil
}

// statusOf sums the workers up. Health is "degraded" when a reader could
// get an error or hang if a worker died now: a mount without a held
// connection, a worker gone without a successor, a mount whose kernel
// cannot resend.
func statusOf(mode string, kernel mgmtapi.Kernel, workers []supervisor.WorkerStatus) mgmtapi.Status {
	st := mgmtapi.Status{
		Version:        version,
		Health:         "ok",
		Mode:           mode,
		WorkersByState: map[string]int{},
		Kernel:         kernel,
	}
	for _, w := range workers {
		st.Workers++
		st.WorkersByState[string(w.State)]++
		for _, m := range w.Mounts {
			st.Mounts++
			if !m.Resend {
				st.Kernel.MountsWithoutResend++
			}
			if m.Protocol != "" && !slices.Contains(st.Kernel.FUSEProtocols, m.Protocol) {
				st.Kernel.FUSEProtocols = append(st.Kernel.FUSEProtocols, m.Protocol)
			}
			if m.State != supervisor.MountServing {
				st.Problems = append(st.Problems, fmt.Sprintf("mount %s of worker %s has no held connection: a death of its worker breaks its readers", m.ID, w.ID))
			}
		}
		switch w.State {
		case supervisor.StateExited, supervisor.StateTakingOver:
			st.Problems = append(st.Problems, fmt.Sprintf("worker %s (pid %d) exited and has no successor yet", w.ID, w.PID))
		case supervisor.StateFailed:
			st.Problems = append(st.Problems, fmt.Sprintf("worker %s crash-looped: its takeover was given up and its layers are failed; restart the snapshotter", w.ID))
		}
	}
	if st.Kernel.MountsWithoutResend > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("%d mounts lack FUSE_NOTIFY_RESEND: reads in flight when their worker dies may hang", st.Kernel.MountsWithoutResend))
	}
	if len(st.Problems) > 0 {
		st.Health = "degraded"
	}
	return st
}

func wireWorker(w supervisor.WorkerStatus) mgmtapi.Worker {
	out := mgmtapi.Worker{
		ID:               w.ID,
		PID:              w.PID,
		Mode:             string(w.Mode),
		State:            string(w.State),
		StartTime:        w.StartTime,
		Restarts:         w.Restarts,
		RSSBytes:         w.RSSBytes,
		LogFile:          w.LogFile,
		FUSENotifyResend: w.ResendSupported(),
		Mounts:           []mgmtapi.Mount{},
	}
	if e := w.LastExit; e != nil {
		out.LastExit = &mgmtapi.Exit{PID: e.PID, Time: e.Time, Cause: e.Cause, Detail: e.Detail, Expected: e.Expected}
	}
	for _, m := range w.Mounts {
		out.Mounts = append(out.Mounts, wireMount(m))
	}
	return out
}

func wireMount(m supervisor.MountStatus) mgmtapi.Mount {
	return mgmtapi.Mount{
		ID:               m.ID,
		LayerDigest:      m.LayerDigest,
		ImageRef:         m.ImageRef,
		WorkerID:         m.WorkerID,
		State:            m.State,
		Mountpoint:       m.Mountpoint,
		FUSENotifyResend: m.Resend,
		FUSEProtocol:     m.Protocol,
		Verification:     m.Verification,
		DiffID:           m.DiffID,
	}
}
