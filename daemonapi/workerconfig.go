package daemonapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
)

// WorkerConfigVersion is the version of WorkerConfig written by this
// snapshotter and the only one this worker reads. Bump it when a field
// changes meaning; adding a field does not need a bump (the snapshotter and
// lazyfsd are installed together, and a worker refuses fields it does not
// know, so a mismatch is a clear error rather than a silently ignored
// setting).
const WorkerConfigVersion = 1

// WorkerConfig is a worker's whole configuration, the one message that
// carries it from the snapshotter to lazyfsd: the snapshotter builds it from
// its config (cmd/snapshotter, workerConfig), the supervisor writes it to
// <run_dir>/workers/config.json (mode 0600) and starts every worker, the
// standby and successors included, with --config naming that file; lazyfsd
// reads it with ReadWorkerConfig. A worker's identity (id and sockets) is
// not part of it: the standby learns that later, on its identity pipe.
//
// To add a worker setting: a field here (JSON name in snake_case, the
// default in the config package's Default), its check in Validate with a
// guard test in workerconfig_test.go, its value in cmd/snapshotter's
// workerConfig, and its use in cmd/lazyfsd. No new lazyfsd flag.
type WorkerConfig struct {
	Version int `json:"version"`
	// Root is the snapshotter root: the TOCs are kept in its tocs/.
	Root string `json:"root"`
	// RunDir is the snapshotter's run dir: a worker's sockets are
	// workers/<id>/{api,control}.sock under it.
	RunDir   string `json:"run_dir"`
	LogLevel string `json:"log_level"`
	// HostsDir is a directory of hosts.toml files (containerd's layout).
	HostsDir string `json:"hosts_dir"`
	// FuseReaders is the number of goroutines reading each FUSE connection.
	FuseReaders int `json:"fuse_readers"`
	// MemoryCacheSize bounds the decompressed chunks cached in memory, by
	// the whole worker (one budget for all its layers).
	MemoryCacheSize int64 `json:"memory_cache_size"`
	// CacheDir is the node's on-disk chunk cache; empty for none.
	CacheDir string    `json:"cache_dir,omitempty"`
	TOC      TOCLimits `json:"toc"`
	// ExitWhenIdle makes the worker exit once it has had no mount for
	// IdleTimeout (0: on its last detach).
	ExitWhenIdle bool     `json:"exit_when_idle"`
	IdleTimeout  Duration `json:"idle_timeout"`

	// --- registry access (issue #12)
	// DockerConfig is the docker config.json with registry credentials,
	// resolved by the snapshotter so that a worker reads the file it was
	// configured with whatever its own environment; read again when it
	// changes.
	DockerConfig string `json:"docker_config,omitempty"`
	// ReadTimeout is the one deadline of a registry read, retries
	// included; 0 is remote's default. The worker caps it below the
	// kernel's FUSE request timeout.
	ReadTimeout Duration `json:"read_timeout,omitempty"`
	// --- end of registry access
	// Fetch schedules the worker's range requests ([fetch]).
	Fetch FetchConfig `json:"fetch"`
}

// FetchConfig is how a worker schedules its range requests to registries
// (package chunks' Scheduler) and whether it prefetches each layer's
// prioritized files. Zero values mean the scheduler's defaults.
type FetchConfig struct {
	// Concurrency bounds the requests in flight to one registry, per
	// class (reads; prefetch and background share as many).
	Concurrency int `json:"concurrency"`
	// Prefetch fetches each layer's prioritized files once it is served.
	Prefetch bool `json:"prefetch"`
	// BackgroundConcurrency bounds the background requests in flight to
	// one registry.
	BackgroundConcurrency int `json:"background_concurrency"`
	// BackgroundRate bounds the compressed bytes per second background
	// requests ask of one registry; 0 means no bound.
	BackgroundRate int64 `json:"background_rate"`
}

// TOCLimits bound the table of contents a worker accepts.
type TOCLimits struct {
	MaxCompressedSize int64 `json:"max_compressed_size"`
	MaxSize           int64 `json:"max_size"`
	MaxEntries        int   `json:"max_entries"`
}

// Duration is a time.Duration written as Go writes it ("30s").
type Duration time.Duration

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what time.ParseDuration reads.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Bounds of WorkerConfig's fields.
const (
	// MinFuseReaders: an INTERRUPT only takes effect if a reader other
	// than the one blocked on the interrupted request is free to read it.
	MinFuseReaders = 2
	MaxFuseReaders = 1024
	// MaxFetchConcurrency bounds FetchConfig's concurrencies.
	MaxFetchConcurrency = 1024
	// maxWorkerConfig bounds the file: a few hundred bytes are expected.
	maxWorkerConfig = 64 << 10
)

var workerLogLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true}

// Validate checks every field; the error names the field (its JSON name)
// and is of class invalid argument.
func (c WorkerConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("worker config: %s %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if c.Version != WorkerConfigVersion {
		return bad("version", "is %d, this worker reads version %d", c.Version, WorkerConfigVersion)
	}
	for _, f := range []struct {
		name, value string
		optional    bool
	}{
		{"root", c.Root, false},
		{"run_dir", c.RunDir, false},
		{"hosts_dir", c.HostsDir, true},
		{"cache_dir", c.CacheDir, true},
		{"docker_config", c.DockerConfig, true},
	} {
		if f.value == "" && f.optional {
			continue
		}
		if !filepath.IsAbs(f.value) {
			return bad(f.name, "%q is not an absolute path", f.value)
		}
	}
	if !workerLogLevels[c.LogLevel] {
		return bad("log_level", "%q is none of trace, debug, info, warn, error", c.LogLevel)
	}
	if c.FuseReaders < MinFuseReaders || c.FuseReaders > MaxFuseReaders {
		return bad("fuse_readers", "is %d, not within %d..%d", c.FuseReaders, MinFuseReaders, MaxFuseReaders)
	}
	if c.MemoryCacheSize < 0 {
		return bad("memory_cache_size", "is negative (%d)", c.MemoryCacheSize)
	}
	if c.TOC.MaxCompressedSize <= 0 || c.TOC.MaxSize <= 0 || c.TOC.MaxEntries <= 0 {
		return bad("toc", "limits %+v must all be positive", c.TOC)
	}
	if c.IdleTimeout < 0 {
		return bad("idle_timeout", "is negative (%s)", time.Duration(c.IdleTimeout))
	}
	if c.ReadTimeout < 0 {
		return bad("read_timeout", "is negative (%s)", time.Duration(c.ReadTimeout))
	}
	if n := c.Fetch.Concurrency; n < 0 || n > MaxFetchConcurrency {
		return bad("fetch.concurrency", "is %d, not within 0 (the default)..%d", n, MaxFetchConcurrency)
	}
	if n := c.Fetch.BackgroundConcurrency; n < 0 || n > MaxFetchConcurrency {
		return bad("fetch.background_concurrency", "is %d, not within 0 (the default)..%d", n, MaxFetchConcurrency)
	}
	if c.Fetch.BackgroundRate < 0 {
		return bad("fetch.background_rate", "is negative (%d)", c.Fetch.BackgroundRate)
	}
	return nil
}

// DecodeWorkerConfig reads a worker config from r: at most 64 KiB of JSON,
// no unknown field (a setting this worker does not know is an error, not a
// silent default), then Validate.
func DecodeWorkerConfig(r io.Reader) (WorkerConfig, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxWorkerConfig+1))
	if err != nil {
		return WorkerConfig{}, err
	}
	if len(data) > maxWorkerConfig {
		return WorkerConfig{}, fmt.Errorf("worker config is larger than %d bytes: %w", maxWorkerConfig, errdefs.ErrInvalidArgument)
	}
	// The version first: a config of another version is reported as such,
	// not as its first unknown field. Unmarshal also refuses data after
	// the object.
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return WorkerConfig{}, fmt.Errorf("worker config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if v.Version != WorkerConfigVersion {
		return WorkerConfig{}, fmt.Errorf("worker config: version is %d, this worker reads version %d: %w", v.Version, WorkerConfigVersion, errdefs.ErrInvalidArgument)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c WorkerConfig
	if err := dec.Decode(&c); err != nil {
		return WorkerConfig{}, fmt.Errorf("worker config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	return c, c.Validate()
}

// ReadWorkerConfig reads the worker config file at path. A file others may
// write is refused: it decides what the worker, running as root, fetches
// and where it writes.
func ReadWorkerConfig(path string) (WorkerConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return WorkerConfig{}, fmt.Errorf("worker config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return WorkerConfig{}, fmt.Errorf("worker config %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return WorkerConfig{}, fmt.Errorf("worker config %s: mode %s lets others write it: %w", path, fi.Mode().Perm(), errdefs.ErrPermissionDenied)
	}
	c, err := DecodeWorkerConfig(f)
	if err != nil {
		return WorkerConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WriteWorkerConfig validates c and writes it to path, mode 0600, replacing
// any earlier file atomically: a worker starting meanwhile reads the old or
// the new config, never a part.
func WriteWorkerConfig(path string, c WorkerConfig) (err error) {
	if err := c.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("failed to write worker config: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes it 0600 already; said again because it matters.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("failed to write worker config: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("failed to write worker config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to write worker config: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("failed to write worker config: %w", err)
	}
	return nil
}
