package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/failover"
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
	l := cfg.Layers
	args := []string{
		"--hosts-dir", cfg.Registry.ConfigPath,
		"--fuse-readers", strconv.Itoa(cfg.Workers.FuseReaders),
		"--memory-cache-size", strconv.FormatInt(int64(l.MemoryCacheSize), 10),
		"--max-toc-compressed-size", strconv.FormatInt(int64(l.MaxTOCCompressedSize), 10),
		"--max-toc-size", strconv.FormatInt(int64(l.MaxTOCSize), 10),
		"--max-entries", strconv.Itoa(l.MaxEntries),
		// In both modes an idle worker goes after a grace; spawn adds
		// --exit-when-idle again for per-image, which is harmless.
		"--exit-when-idle",
		"--idle-timeout", time.Duration(cfg.Workers.IdleTimeout).String(),
	}
	if cfg.Cache.Size > 0 {
		args = append(args, "--cache-dir", cfg.CacheDir())
	}
	// --- registry access (issue #12): every [registry] setting a worker
	// needs beside --hosts-dir, in one block for the typed worker message.
	args = append(args,
		"--read-timeout", time.Duration(cfg.Registry.ReadTimeout).String(),
		// Resolved here, so that a worker reads the file the snapshotter
		// was configured with whatever its own environment.
		"--docker-config", remote.DockerConfigPath(cfg.Registry.DockerConfig),
	)
	// --- end of registry access
	return supervisor.New(ctx, supervisor.Options{
		Root:         cfg.Root,
		RunDir:       cfg.RunDir,
		LogDir:       cfg.LogDir,
		Binary:       bin,
		Mode:         supervisor.Mode(cfg.Workers.Mode),
		ReadyTimeout: time.Duration(cfg.Workers.ReadyTimeout),
		LogLevel:     cfg.LogLevel,

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

		WorkerArgs: args,
	})
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
