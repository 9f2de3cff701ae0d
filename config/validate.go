package config

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/lazyfs/lazyfs/layout"
)

// Limits that Validate enforces.
const (
	// maxSocketPath is the longest path bind(2) accepts for a unix socket:
	// sun_path holds 108 bytes including the terminating NUL.
	maxSocketPath = 107
	// minFuseReaders: an INTERRUPT only takes effect if a reader other than
	// the one blocked on the interrupted request is free to read it.
	minFuseReaders = 2
	// maxFuseReaders bounds the goroutines, and their request buffers, per
	// FUSE connection: beyond the cores of any node, more readers only cost
	// memory.
	maxFuseReaders = 1024
	// maxFetchConcurrency bounds the requests a worker sends one registry
	// at once: past it, a registry throttles or refuses rather than serves
	// faster.
	maxFetchConcurrency = 1024
)

// workerSocketSuffix is the longest path the supervisor puts under run_dir
// for a worker's socket: workers/<id>/control.sock with a 20-character
// worker id.
var workerSocketSuffix = len(layout.RunDir("/").WorkerControlSocket("img-0123456789abcdef"))

// Validate checks every value of c and returns an *Error listing each
// invalid one, keyed by its dotted name, or nil.
func (c Config) Validate() error {
	var v validator
	v.absPath("root", c.Root)
	v.socketPath("address", c.Address)
	v.absPath("run_dir", c.RunDir)
	if n := len(c.RunDir) + workerSocketSuffix; n > maxSocketPath {
		v.add("run_dir", "%q is too long: worker sockets under it would be %d bytes, a unix socket path has at most %d", c.RunDir, n, maxSocketPath)
	}
	v.oneOf("log_level", c.LogLevel, logLevels)
	v.absPath("log_dir", c.LogDir)
	v.hostPort("debug.address", c.Debug.Address)
	v.oneOf("workers.mode", string(c.Workers.Mode), workerModes)
	if c.Workers.Binary != "" {
		v.absPath("workers.binary", c.Workers.Binary)
	}
	if n := c.Workers.FuseReaders; n < minFuseReaders || n > maxFuseReaders {
		v.add("workers.fuse_readers", "%d is out of range: must be from %d (a reader must stay free for the kernel's INTERRUPT) to %d",
			n, minFuseReaders, maxFuseReaders)
	}
	if c.Workers.ReadyTimeout <= 0 {
		v.add("workers.ready_timeout", "%s is out of range: must be longer than 0s", c.Workers.ReadyTimeout)
	}
	v.oneOf("workers.recover_policy", c.Workers.RecoverPolicy, recoverPolicies)
	if n := c.Workers.CrashLoopCount; n < 1 || n > 1000 {
		v.add("workers.crash_loop_count", "%d is out of range: must be from 1 to 1000", n)
	}
	if c.Workers.CrashLoopWindow <= 0 {
		v.add("workers.crash_loop_window", "%s is out of range: must be longer than 0s", c.Workers.CrashLoopWindow)
	}
	if c.Workers.RestartBackoff <= 0 {
		v.add("workers.restart_backoff", "%s is out of range: must be longer than 0s", c.Workers.RestartBackoff)
	}
	if c.Workers.IdleTimeout < 0 {
		v.add("workers.idle_timeout", "%s is out of range: must be 0s (exit at once) or longer", c.Workers.IdleTimeout)
	}
	if c.Workers.HealthInterval <= 0 {
		v.add("workers.health_interval", "%s is out of range: must be longer than 0s", c.Workers.HealthInterval)
	}
	if c.Workers.HungTimeout <= 0 {
		v.add("workers.hung_timeout", "%s is out of range: must be longer than 0s", c.Workers.HungTimeout)
	}
	if c.Workers.Logs.MaxSize < MiB {
		v.add("workers.logs.max_size", "%s is out of range: must be at least 1MiB", c.Workers.Logs.MaxSize)
	}
	if n := c.Workers.Logs.MaxBackups; n < 0 || n > 1000 {
		v.add("workers.logs.max_backups", "%d is out of range: must be from 0 to 1000", n)
	}
	if c.Workers.Logs.MaxAge < 0 {
		v.add("workers.logs.max_age", "%s is out of range: must not be negative", c.Workers.Logs.MaxAge)
	}
	v.positiveSize("layers.max_toc_compressed_size", c.Layers.MaxTOCCompressedSize)
	v.positiveSize("layers.max_toc_size", c.Layers.MaxTOCSize)
	if c.Layers.MaxEntries < 1 {
		v.add("layers.max_entries", "%d is out of range: must be at least 1", c.Layers.MaxEntries)
	}
	v.positiveSize("layers.memory_cache_size", c.Layers.MemoryCacheSize)
	if c.Layers.ProofWait <= 0 {
		v.add("layers.proof_wait", "%s is out of range: must be longer than 0s", c.Layers.ProofWait)
	}
	if !slices.Contains(verifyModes, c.Layers.Verify) {
		v.add("layers.verify", "%q is not one of %s", c.Layers.Verify, strings.Join(verifyModes, ", "))
	}
	if n := c.Layers.ProofConcurrency; n < 0 || n > MaxProofConcurrency {
		v.add("layers.proof_concurrency", "%d is out of range: must be from 0 to %d", n, MaxProofConcurrency)
	}
	if c.Containerd.Address != "" {
		v.absPath("containerd.address", c.Containerd.Address)
	}
	if c.Containerd.Snapshotter == "" {
		v.add("containerd.snapshotter", "must name containerd's proxy plugin for lazyfs")
	}
	v.absPath("registry.config_path", c.Registry.ConfigPath)
	if c.Registry.DockerConfig != "" {
		v.absPath("registry.docker_config", c.Registry.DockerConfig)
	}
	if c.Registry.ReadTimeout <= 0 || c.Registry.ReadTimeout > MaxReadTimeout {
		v.add("registry.read_timeout", "%s is out of range: must be longer than 0s and at most %s", c.Registry.ReadTimeout, MaxReadTimeout)
	}
	if c.Cache.Size < 0 {
		v.add("cache.size", "%s is out of range: must be 0 (no disk cache) or more", c.Cache.Size)
	}
	if c.Cache.Dir != "" {
		v.absPath("cache.dir", c.Cache.Dir)
	}
	if n := c.Fetch.Concurrency; n < 1 || n > maxFetchConcurrency {
		v.add("fetch.concurrency", "%d is out of range: must be from 1 to %d", n, maxFetchConcurrency)
	}
	if n := c.Fetch.BackgroundConcurrency; n < 1 || n > maxFetchConcurrency {
		v.add("fetch.background_concurrency", "%d is out of range: must be from 1 to %d", n, maxFetchConcurrency)
	}
	if c.Fetch.BackgroundRate < 0 {
		v.add("fetch.background_rate", "%s is out of range: must be 0 (no bound) or more", c.Fetch.BackgroundRate)
	}
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{Problems: v.problems}
}

// validator collects the problems of Validate.
type validator struct {
	problems []Problem
}

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// absPath refuses relative paths: the snapshotter's working directory is
// not something an operator controls.
func (v *validator) absPath(key, p string) {
	if !filepath.IsAbs(p) {
		v.add(key, "%q is not an absolute path", p)
	}
}

func (v *validator) socketPath(key, p string) {
	v.absPath(key, p)
	if len(p) > maxSocketPath {
		v.add(key, "%q is %d bytes long: a unix socket path has at most %d", p, len(p), maxSocketPath)
	}
}

func (v *validator) oneOf(key, s string, allowed []string) {
	if !slices.Contains(allowed, s) {
		v.add(key, "%q is not one of %s", s, quoteAll(allowed))
	}
}

// hostPort accepts "" (off) or host:port with a numeric port; the host may
// be empty, which listens on every address.
func (v *validator) hostPort(key, s string) {
	if s == "" {
		return
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		var n uint64
		n, err = strconv.ParseUint(port, 10, 16)
		if err == nil && n == 0 {
			err = strconv.ErrRange
		}
	}
	if err != nil {
		v.add(key, `%q is not host:port with a port from 1 to 65535 (e.g. "127.0.0.1:9100"; "" turns it off)`, s)
	}
}

func (v *validator) positiveSize(key string, b ByteSize) {
	if b <= 0 {
		v.add(key, "%s is out of range: must be more than 0 bytes", b)
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
