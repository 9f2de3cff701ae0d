package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// stateUnreachable is the state shown for a worker whose API socket exists
// but does not answer: a dead worker's leftover socket, or a hung worker.
const stateUnreachable daemonapi.DaemonState = "unreachable"

// maxParallelQueries bounds the workers asked at once, so that a node
// with hundreds of images does not open hundreds of connections.
const maxParallelQueries = 8

// workerRef is a worker found on disk: its id (the name of its directory)
// and its API socket.
type workerRef struct {
	id     string
	socket string
}

// workerStatus is a worker as the daemons commands report it: the
// DaemonInfo it answered (whose JSON fields it keeps), or its id and state
// "unreachable" with the error.
type workerStatus struct {
	daemonapi.DaemonInfo
	APISocket string `json:"api_socket"`
	Log       string `json:"log"`
	Error     string `json:"error,omitempty"`
}

func workersDir(runDir string) string { return filepath.Join(runDir, "workers") }

func workerLogPath(logDir, id string) string {
	return filepath.Join(logDir, "daemons", id+".log")
}

// validateWorkerID refuses what cannot be a worker's directory name, so that
// an id never reaches outside the run or log dir.
func validateWorkerID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("%q is not a worker id: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// findWorkers returns the workers that have an API socket under
// <runDir>/workers, sorted by id. A missing directory means no workers.
func findWorkers(runDir string) ([]workerRef, error) {
	dir := workersDir(runDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("failed to list workers (the run dir is root's only): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list workers: %w", err)
	}
	var refs []workerRef
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sock := filepath.Join(dir, e.Name(), "api.sock")
		if _, err := os.Lstat(sock); err != nil {
			// Being spawned or being removed: not a worker to ask yet.
			continue
		}
		refs = append(refs, workerRef{id: e.Name(), socket: sock})
	}
	return refs, nil
}

// findWorker returns the worker id under runDir, or an error saying it is
// not there.
func findWorker(runDir, id string) (workerRef, error) {
	sock := filepath.Join(workersDir(runDir), id, "api.sock")
	if _, err := os.Lstat(sock); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return workerRef{}, fmt.Errorf("worker %s: %w: no %s ('daemons list' shows the workers)", id, errdefs.ErrNotFound, sock)
		}
		return workerRef{}, fmt.Errorf("worker %s: %w", id, err)
	}
	return workerRef{id: id, socket: sock}, nil
}

// queryWorkers asks every worker for its info, in parallel. It never fails:
// a worker that does not answer is reported as unreachable.
func queryWorkers(ctx context.Context, refs []workerRef, logDir string, timeout time.Duration) []workerStatus {
	statuses := make([]workerStatus, len(refs))
	var eg errgroup.Group
	eg.SetLimit(maxParallelQueries)
	for i, ref := range refs {
		eg.Go(func() error {
			statuses[i], _ = queryWorker(ctx, ref, logDir, timeout)
			return nil
		})
	}
	eg.Wait()
	slices.SortFunc(statuses, func(a, b workerStatus) int { return strings.Compare(a.ID, b.ID) })
	return statuses
}

// queryWorker asks one worker for its info. On error the status is still
// filled in: the id, state "unreachable", and the error.
func queryWorker(ctx context.Context, ref workerRef, logDir string, timeout time.Duration) (workerStatus, error) {
	st := workerStatus{APISocket: ref.socket, Log: workerLogPath(logDir, ref.id)}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := daemonapi.NewClient(ref.socket, ref.id)
	defer c.Close()
	info, err := c.Info(qctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w (no answer within %s)", err, timeout)
		}
		st.ID = ref.id
		st.State = stateUnreachable
		st.Mounts = []daemonapi.MountInfo{}
		st.Error = err.Error()
		return st, err
	}
	st.DaemonInfo = info
	// The directory name is what logs and inspect are found by.
	st.ID = ref.id
	if st.Mounts == nil {
		st.Mounts = []daemonapi.MountInfo{}
	}
	// Workers answer in map order; the operator wants a stable list.
	slices.SortFunc(st.Mounts, func(a, b daemonapi.MountInfo) int { return compareMountIDs(a.ID, b.ID) })
	return st, nil
}

// compareMountIDs orders numeric ids (the snapshot ids the snapshotter
// uses) by value and the rest as strings, numbers first.
func compareMountIDs(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}
