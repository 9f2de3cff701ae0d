package main

import (
	"context"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/remote"
)

// resolverOptions are the worker's registry settings: the read deadline is
// kept below the kernel's FUSE request timeout, since a request the kernel
// gives up on aborts the whole connection, not one read.
//
// Credentials come from the docker config.json, read again whenever it
// changes; they are asked for only when a registry challenges a request.
func resolverOptions(ctx context.Context, cfg daemonapi.WorkerConfig) remote.Options {
	readTimeout := time.Duration(cfg.ReadTimeout)
	if readTimeout == 0 {
		readTimeout = remote.DefaultReadTimeout
	}
	kernel := remote.KernelRequestTimeout()
	capped := remote.CapReadTimeout(readTimeout, kernel)
	if capped != readTimeout {
		log.G(ctx).WithFields(log.Fields{"read_timeout": readTimeout, "kernel_request_timeout": kernel, "used": capped}).
			Warn("registry read timeout capped below the kernel's FUSE request timeout")
	}
	creds := remote.NewDockerCredentials(remote.DockerConfigPath(cfg.DockerConfig))
	log.G(ctx).WithField("docker_config", creds.Path()).Debug("registry credentials from docker config")
	return remote.Options{
		HostsDir:    cfg.HostsDir,
		UserAgent:   "lazyfsd/" + version,
		ReadTimeout: capped,
		Credentials: creds.Credentials,
	}
}
