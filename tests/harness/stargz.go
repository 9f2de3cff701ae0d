package harness

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
)

// Stargz is a running stargz-snapshotter (bin/stargz, built from the
// tests/stargz module) with its root, socket and log under a short temp
// dir: the benchmark's side-by-side peer. Close stops it and unmounts
// whatever it left mounted.
type Stargz struct {
	base string
	proc *process
}

// StartStargz starts bin/stargz and waits until its socket accepts
// connections.
func StartStargz(ctx context.Context, env Env) (_ *Stargz, err error) {
	if err := env.CheckBinaries("stargz"); err != nil {
		return nil, err
	}
	base, err := newBaseDir("g")
	if err != nil {
		return nil, err
	}
	s := &Stargz{base: base}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	cmd := exec.Command(env.Bin("stargz"), "--address", s.Address(), "--root", s.Root(), "--log-level", "debug")
	if s.proc, err = startProcess("stargz", s.logPath(), cmd); err != nil {
		return nil, err
	}
	if err := waitSocket(ctx, s.proc, s.Address(), defaultSnapshotterReadyTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

// Address is its gRPC socket (containerd's proxy_plugins.stargz.address).
func (s *Stargz) Address() string { return filepath.Join(s.base, "stargz.sock") }

// Root is its root (containerd's exports root).
func (s *Stargz) Root() string { return filepath.Join(s.base, "root") }

// Logs returns its log file.
func (s *Stargz) Logs() []string { return []string{s.logPath()} }

func (s *Stargz) logPath() string { return filepath.Join(s.base, "stargz.log") }

// Close stops it, unmounts what it left mounted (its FUSE mounts outlive
// it) and removes its dir.
func (s *Stargz) Close() error {
	var errs []error
	if s.proc != nil {
		if _, inTime := s.proc.stop(defaultSnapshotterStopTimeout); !inTime {
			errs = append(errs, errors.New("stargz did not stop in time: killed"))
		}
	}
	errs = append(errs, unmountUnder(s.base), removeBaseDir(s.base))
	return errors.Join(errs...)
}

// Pid is the process id of stargz.
func (s *Stargz) Pid() int { return s.proc.pid() }
