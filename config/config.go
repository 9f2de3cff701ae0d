package config

import (
	"time"

	"github.com/lazyfs/lazyfs/layout"
)

// DefaultPath is where the snapshotter looks for its configuration.
const DefaultPath = "/etc/lazyfs/config.toml"

// WorkerMode says how layers are spread over worker processes.
type WorkerMode string

const (
	// WorkersPerImage runs one worker per image: a hostile or crashing layer
	// only affects the containers of its own image.
	WorkersPerImage WorkerMode = "per-image"
	// WorkersShared runs a single worker for every layer, which saves a
	// process and its memory cache per image on nodes with many images.
	WorkersShared WorkerMode = "shared"
)

// Log levels accepted by log_level, from the most to the least verbose.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// workerModes lists the accepted values of workers.mode.
var workerModes = []string{string(WorkersPerImage), string(WorkersShared)}

// Values of workers.recover_policy.
const (
	// RecoverFailover hands a dead worker's FUSE connections to a
	// successor: running containers see a stall, never an error.
	RecoverFailover = "failover"
	// RecoverRemount closes a dead worker's connections (running
	// containers reading its layers get errors) and mounts the layers
	// again for new containers.
	RecoverRemount = "remount"
)

var recoverPolicies = []string{RecoverFailover, RecoverRemount}

// MaxReadTimeout bounds registry.read_timeout: a reader blocked longer
// than this on one read is better served by an error.
const MaxReadTimeout = Duration(10 * time.Minute)

// Config is the snapshotter's configuration. The toml tags are the key names.
type Config struct {
	// Root holds the metadata databases, the snapshots, the kept TOCs and,
	// unless [cache] dir says otherwise, the on-disk chunk cache.
	Root string `toml:"root"`
	// Address is the unix socket of the gRPC snapshots service that
	// containerd's proxy plugin dials (at most 107 bytes, bind(2)'s limit).
	Address string `toml:"address"`
	// RunDir holds the management socket (api.sock) and each worker's
	// sockets under workers/<id>/.
	RunDir string `toml:"run_dir"`
	// LogLevel is one of trace, debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// LogDir holds each worker's rotated log under daemons/.
	LogDir string `toml:"log_dir"`
	// KeepWorkersOnExit is deprecated and ignored: every stop keeps the
	// workers of the layers running containers use (see ShutdownConfig).
	// Still accepted so that configs written for earlier versions load.
	KeepWorkersOnExit bool `toml:"keep_workers_on_exit"`

	Debug    DebugConfig    `toml:"debug"`
	Workers  WorkersConfig  `toml:"workers"`
	Layers   LayersConfig   `toml:"layers"`
	Registry RegistryConfig `toml:"registry"`
	Shutdown ShutdownConfig `toml:"shutdown"`
	Cache    CacheConfig    `toml:"cache"`
	Fetch    FetchConfig    `toml:"fetch"`

	Containerd ContainerdConfig `toml:"containerd"`
}

// ShutdownConfig is the [shutdown] table. On SIGINT or SIGTERM the
// snapshotter unmounts the layers no container uses, stops the workers left
// with nothing to serve, and keeps the others serving for the next start.
type ShutdownConfig struct {
	// UnmountAll drains the node on every stop: layers that running
	// containers use are detached too and every worker stops, so those
	// containers get errors on their next read. For decommissioning lazyfs
	// on a node whose containers cannot be stopped first.
	UnmountAll bool `toml:"unmount_all"`
}

// DebugConfig is the [debug] table.
type DebugConfig struct {
	// Address is the host:port (port 1 to 65535, host empty for every
	// address) serving pprof and /metrics; empty turns the listener off.
	Address string `toml:"address"`
}

// WorkersConfig is the [workers] table.
type WorkersConfig struct {
	// Mode is WorkersPerImage or WorkersShared.
	Mode WorkerMode `toml:"mode"`
	// Binary is the absolute path of lazyfsd. Empty means the lazyfsd next
	// to the snapshotter's executable, then the one on $PATH.
	Binary string `toml:"binary"`
	// FuseReaders is the number of goroutines reading each FUSE connection,
	// from 2 to 1024. At least 2: the kernel's INTERRUPT for a request only
	// takes effect if another reader is free to read it.
	FuseReaders int `toml:"fuse_readers"`
	// ReadyTimeout bounds the wait for a spawned worker to become ready.
	ReadyTimeout Duration `toml:"ready_timeout"`
	// RecoverPolicy is what happens to the mounts of a worker that dies:
	// RecoverFailover (default) or RecoverRemount.
	RecoverPolicy string `toml:"recover_policy"`
	// CrashLoopCount is how many times in a row a worker may die within
	// CrashLoopWindow of taking its mounts over before they are given up
	// (marked failed, their readers get errors), from 1 to 1000.
	CrashLoopCount int `toml:"crash_loop_count"`
	// CrashLoopWindow: a worker that dies sooner than this after it began
	// serving counts towards CrashLoopCount; one that served longer
	// resets the count.
	CrashLoopWindow Duration `toml:"crash_loop_window"`
	// RestartBackoff is the wait before the successor of a worker that
	// died quickly for the second time in a row; it doubles with each
	// further quick death, up to 5s. The first successor starts at once.
	RestartBackoff Duration `toml:"restart_backoff"`
	// IdleTimeout is how long a worker with no mount waits for a new one
	// before it exits, in both modes; 0s exits at once. A grace saves a
	// respawn when an image is removed and pulled again.
	IdleTimeout Duration `toml:"idle_timeout"`
	// HealthInterval is how often each worker's API is asked whether it
	// is healthy.
	HealthInterval Duration `toml:"health_interval"`
	// HungTimeout: a worker whose health check is not answered within it
	// (twice in a row) is hung: it is sent SIGQUIT (its goroutine dump
	// lands in its log), then SIGKILL, and its mounts fail over.
	HungTimeout Duration `toml:"hung_timeout"`

	Logs WorkerLogsConfig `toml:"logs"`
}

// WorkerLogsConfig is the [workers.logs] table: how each worker's log file
// (<log_dir>/daemons/<worker id>.log) is rotated.
type WorkerLogsConfig struct {
	// MaxSize rotates the file past this size (at least 1 MiB; rounded
	// to whole MiB).
	MaxSize ByteSize `toml:"max_size"`
	// MaxBackups is how many rotated files are kept; 0 keeps them all.
	MaxBackups int `toml:"max_backups"`
	// MaxAge removes rotated files older than this (whole days); 0 keeps
	// them.
	MaxAge Duration `toml:"max_age"`
	// Compress gzips rotated files.
	Compress bool `toml:"compress"`
}

// LayersConfig is the [layers] table: limits that protect the workers from
// hostile layers, and the workers' memory.
type LayersConfig struct {
	// MaxTOCCompressedSize bounds the compressed TOC fetched from the
	// registry; checked before allocating.
	MaxTOCCompressedSize ByteSize `toml:"max_toc_compressed_size"`
	// MaxTOCSize bounds the uncompressed TOC JSON.
	MaxTOCSize ByteSize `toml:"max_toc_size"`
	// MaxEntries bounds the number of entries of a TOC.
	MaxEntries int `toml:"max_entries"`
	// MemoryCacheSize bounds the in-memory cache of decompressed chunks of
	// a whole worker: one budget shared by every layer it serves, whatever
	// their number (in shared mode, every lazy layer of the node). The
	// worker's soft memory limit is derived from it (worker.MemoryOverhead).
	MemoryCacheSize ByteSize `toml:"memory_cache_size"`
	// ProofWait bounds how long a pull that brings another blob for a
	// chain ID already mounted lazily waits for the stored layer's proof
	// (a download of its whole blob) before it fails with a clear error.
	ProofWait Duration `toml:"proof_wait"`
	// Verify says when a lazily mounted layer must be proven against its
	// DiffID (VerifyBeforeShare, VerifyBackground or VerifyBeforeUse); see
	// docs/threat-model.md for what each guarantees.
	Verify string `toml:"verify"`
	// ProofConcurrency is how many layers are proven in the background at
	// once, from 0 to 64. 0 turns background proofs off: a layer is then
	// proven only when another image contests it or verify needs it
	// before a container starts.
	ProofConcurrency int `toml:"proof_concurrency"`
}

// Values of layers.verify.
const (
	// VerifyBeforeShare proves every layer in the background and makes a
	// container wait for the proof of a lower layer that another image of
	// its namespace reaches with another blob.
	VerifyBeforeShare = "before-share"
	// VerifyBackground proves every layer in the background and never
	// makes a container wait (a forged layer is quarantined once found).
	VerifyBackground = "background"
	// VerifyBeforeUse makes every container wait until each of its lazily
	// mounted lower layers is proven: lazy start is given up for safety.
	VerifyBeforeUse = "before-use"
)

var verifyModes = []string{VerifyBeforeShare, VerifyBackground, VerifyBeforeUse}

// MaxProofConcurrency bounds layers.proof_concurrency: each proof is a
// download of a whole blob.
const MaxProofConcurrency = 64

// ContainerdConfig is the [containerd] table: how the snapshotter asks
// containerd which images reach a layer (layers.verify = "before-share")
// and removes a forged layer's snapshots.
type ContainerdConfig struct {
	// Address is containerd's gRPC socket; empty means the snapshotter
	// cannot tell images apart, and waits for every unproven layer as
	// "before-use" does.
	Address string `toml:"address"`
	// Snapshotter is the name containerd knows lazyfs by (its proxy
	// plugin's name).
	Snapshotter string `toml:"snapshotter"`
}

// RegistryConfig is the [registry] table.
type RegistryConfig struct {
	// ConfigPath is a directory of hosts.toml files in containerd's layout
	// (<host>/hosts.toml), so that the mirrors, CAs and headers configured
	// for containerd apply to lazy pulls as well.
	ConfigPath string `toml:"config_path"`
	// DockerConfig is the path of a docker config.json with registry
	// credentials (auths, credHelpers, credsStore); empty means
	// $DOCKER_CONFIG/config.json, then ~/.docker/config.json. Workers read
	// it again whenever it changes.
	DockerConfig string `toml:"docker_config"`
	// ReadTimeout is the one deadline of a registry read a FUSE READ
	// waits on, retries, hedges and backoffs included (issue #12). The
	// worker caps it below the kernel's FUSE request timeout, if any.
	ReadTimeout Duration `toml:"read_timeout"`
}

// CacheConfig is the [cache] table: the on-disk chunk cache every worker
// of the node shares.
type CacheConfig struct {
	// Size is the cache's budget: the snapshotter evicts the least recently
	// used chunks when the cache holds more (checked every few seconds, so
	// it may exceed it briefly by what was fetched meanwhile). Zero turns
	// the disk cache off: chunks are then kept in memory only.
	Size ByteSize `toml:"size"`
	// Dir is where the cache lives; empty means <root>/cache. It must be
	// local: workers rename files into it and the evictor relies on atimes.
	Dir string `toml:"dir"`
}

// FetchConfig is the [fetch] table: how workers schedule range requests to
// registries, and the prefetch of each layer's prioritized files.
type FetchConfig struct {
	// Concurrency bounds a worker's range requests in flight to one
	// registry, per class: reads containers wait on have this many slots
	// of their own; prefetch and background fetches share as many, and
	// only use them while the registry is not busy with reads (1 to 1024).
	Concurrency int `toml:"concurrency"`
	// Prefetch fetches, when a layer is mounted, the files its eStargz
	// builder put before the prefetch landmark (what the image's entry
	// point needs first), at a priority below reads.
	Prefetch bool `toml:"prefetch"`
	// BackgroundConcurrency bounds a worker's background (whole-layer)
	// requests in flight to one registry (1 to 1024, within the shared
	// slots).
	BackgroundConcurrency int `toml:"background_concurrency"`
	// BackgroundRate bounds the compressed bytes per second a worker's
	// background requests ask of one registry; 0 means no bound.
	BackgroundRate ByteSize `toml:"background_rate"`
}

// CacheDir returns the chunk cache's directory: Cache.Dir, else <root>/cache.
func (c Config) CacheDir() string {
	if c.Cache.Dir != "" {
		return c.Cache.Dir
	}
	return layout.Root(c.Root).Cache()
}

// Default returns the configuration used when no file exists, and the base
// that a document overrides key by key.
func Default() Config {
	return Config{
		Root:     layout.DefaultRoot,
		Address:  layout.RunDir(layout.DefaultRunDir).SnapshotterSocket(),
		RunDir:   layout.DefaultRunDir,
		LogLevel: "info",
		LogDir:   layout.DefaultLogDir,
		Workers: WorkersConfig{
			Mode:            WorkersPerImage,
			FuseReaders:     4,
			ReadyTimeout:    Duration(10 * time.Second),
			RecoverPolicy:   RecoverFailover,
			CrashLoopCount:  5,
			CrashLoopWindow: Duration(10 * time.Second),
			RestartBackoff:  Duration(100 * time.Millisecond),
			IdleTimeout:     Duration(30 * time.Second),
			HealthInterval:  Duration(10 * time.Second),
			HungTimeout:     Duration(10 * time.Second),
			Logs: WorkerLogsConfig{
				MaxSize:    100 * MiB,
				MaxBackups: 5,
				Compress:   true,
			},
		},
		Layers: LayersConfig{
			MaxTOCCompressedSize: 64 * MiB,
			MaxTOCSize:           256 * MiB,
			MaxEntries:           2_000_000,
			MemoryCacheSize:      16 * MiB,
			ProofWait:            Duration(3 * time.Minute),
			Verify:               VerifyBeforeShare,
			ProofConcurrency:     1,
		},
		Registry: RegistryConfig{
			ConfigPath:  "/etc/containerd/certs.d",
			ReadTimeout: Duration(30 * time.Second),
		},
		Cache: CacheConfig{
			Size: 10 * GiB,
		},
		Fetch: FetchConfig{
			Concurrency:           8,
			Prefetch:              true,
			BackgroundConcurrency: 2,
			BackgroundRate:        0,
		},
		Containerd: ContainerdConfig{
			Address:     "/run/containerd/containerd.sock",
			Snapshotter: "lazyfs",
		},
	}
}
