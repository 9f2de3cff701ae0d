package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/labels"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/supervisor"
)

// newSupervisor turns the config into the supervisor's options: config never
// reaches the supervisor itself.
func newSupervisor(ctx context.Context, cfg config.Config) (*supervisor.Supervisor, error) {
	bin, err := workerBinary(cfg.Workers.Binary)
	if err != nil {
		return nil, err
	}
	warnWithoutResend(ctx, cfg)
	return supervisor.New(ctx, supervisor.Options{
		Root:         cfg.Root,
		RunDir:       cfg.RunDir,
		LogDir:       cfg.LogDir,
		Binary:       bin,
		Mode:         supervisor.Mode(cfg.Workers.Mode),
		ReadyTimeout: time.Duration(cfg.Workers.ReadyTimeout),
		Worker:       workerConfig(cfg),

		RecoverPolicy:   supervisor.RecoverPolicy(cfg.Workers.RecoverPolicy),
		CrashLoopCount:  cfg.Workers.CrashLoopCount,
		CrashLoopWindow: time.Duration(cfg.Workers.CrashLoopWindow),
		RestartBackoff:  time.Duration(cfg.Workers.RestartBackoff),
		HealthInterval:  time.Duration(cfg.Workers.HealthInterval),
		HungTimeout:     time.Duration(cfg.Workers.HungTimeout),
		Logs: supervisor.LogRotation{
			MaxSizeMB:  int(cfg.Workers.Logs.MaxSize / config.MiB),
			MaxBackups: cfg.Workers.Logs.MaxBackups,
			MaxAgeDays: int((time.Duration(cfg.Workers.Logs.MaxAge) + 24*time.Hour - 1) / (24 * time.Hour)),
			Compress:   cfg.Workers.Logs.Compress,
		},
		// Under systemd every connection's fd is kept in the fd store too,
		// so that the snapshotter and a worker dying together lose none.
		FDStore:   failover.NewFDStore(),
		StoredFDs: failover.TakeListenFDs(),
		// workers.db of a snapshotter older than the typed layer names
		// each mount's layer by its labels.
		ParseLegacyLabels: labels.ParseLayer,
	})
}

// workerConfig is every worker's configuration, taken from the
// snapshotter's: the one place it is built (a new worker setting goes here,
// see daemonapi.WorkerConfig).
func workerConfig(cfg config.Config) daemonapi.WorkerConfig {
	l := cfg.Layers
	wc := daemonapi.WorkerConfig{
		Version:         daemonapi.WorkerConfigVersion,
		Root:            cfg.Root,
		RunDir:          cfg.RunDir,
		LogLevel:        cfg.LogLevel,
		HostsDir:        cfg.Registry.ConfigPath,
		FuseReaders:     cfg.Workers.FuseReaders,
		MemoryCacheSize: int64(l.MemoryCacheSize),
		TOC: daemonapi.TOCLimits{
			MaxCompressedSize: int64(l.MaxTOCCompressedSize),
			MaxSize:           int64(l.MaxTOCSize),
			MaxEntries:        l.MaxEntries,
		},
		// In both modes an idle worker goes after a grace.
		ExitWhenIdle: true,
		IdleTimeout:  daemonapi.Duration(cfg.Workers.IdleTimeout),
		Fetch: daemonapi.FetchConfig{
			Concurrency:           cfg.Fetch.Concurrency,
			Prefetch:              cfg.Fetch.Prefetch,
			BackgroundConcurrency: cfg.Fetch.BackgroundConcurrency,
			BackgroundRate:        int64(cfg.Fetch.BackgroundRate),
		},
	}
	if cfg.Cache.Size > 0 {
		wc.CacheDir = cfg.CacheDir()
	}
	// --- registry access (issue #12)
	wc.ReadTimeout = daemonapi.Duration(cfg.Registry.ReadTimeout)
	wc.DockerConfig = remote.DockerConfigPath(cfg.Registry.DockerConfig)
	// --- end of registry access
	return wc
}

// workerBinary finds lazyfsd: the configured path, else the one next to this
// executable (so that a build directory works as it is), else $PATH.
func workerBinary(configured string) (string, error) {
	if configured != "" {
		if err := checkExecutable(configured); err != nil {
			return "", fmt.Errorf("workers.binary: %w", err)
		}
		return configured, nil
	}
	if self, err := os.Executable(); err == nil {
		next := filepath.Join(filepath.Dir(self), "lazyfsd")
		if checkExecutable(next) == nil {
			return next, nil
		}
	}
	p, err := exec.LookPath("lazyfsd")
	if err != nil {
		return "", fmt.Errorf("lazyfsd not found next to the snapshotter nor on $PATH; set workers.binary: %w", err)
	}
	return p, nil
}

// warnWithoutResend says at start-up what a kernel without
// FUSE_NOTIFY_RESEND (before Linux 6.9) costs: failover replaces a dead
// worker, but the reads it held hang.
func warnWithoutResend(ctx context.Context, cfg config.Config) {
	release, resend, err := failover.KernelRelease()
	switch {
	case err != nil:
		log.G(ctx).WithError(err).Warn("cannot tell whether the kernel supports FUSE_NOTIFY_RESEND")
	case !resend && cfg.Workers.RecoverPolicy == config.RecoverFailover:
		log.G(ctx).WithField("kernel", release).Warn("kernel lacks FUSE_NOTIFY_RESEND (Linux < 6.9): when a worker dies, reads it held hang until the kernel's FUSE request timeout; see docs/failover.md")
	default:
		log.G(ctx).WithField("kernel", release).WithField("fuse_notify_resend", resend).Debug("kernel checked for failover")
	}
}

// checkExecutable fails at start-up, naming the file, rather than at the
// first lazy pull, when the worker binary cannot be run.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("%s is not executable: %w: %w", path, errdefs.ErrInvalidArgument, err)
	}
	return nil
}
