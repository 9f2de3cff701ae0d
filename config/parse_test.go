package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/config"
)

func TestParseOverlaysDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want func(*config.Config)
	}{
		{name: "empty document", doc: ""},
		{name: "comments only", doc: "# nothing set\n\n   # still nothing\n"},
		{
			name: "top-level keys",
			doc:  "root = \"/srv/lazyfs\"\nlog_level = \"debug\"\nkeep_workers_on_exit = true\n",
			want: func(c *config.Config) {
				c.Root, c.LogLevel, c.KeepWorkersOnExit = "/srv/lazyfs", "debug", true
			},
		},
		{
			name: "tables",
			doc: "[workers]\nmode = \"shared\"\nbinary = \"/opt/lazyfs/lazyfsd\"\nfuse_readers = 2\n" +
				"[debug]\naddress = \"127.0.0.1:9100\"\n[registry]\ndocker_config = \"/etc/lazyfs/auth.json\"\n",
			want: func(c *config.Config) {
				c.Workers.Mode, c.Workers.Binary, c.Workers.FuseReaders = config.WorkersShared, "/opt/lazyfs/lazyfsd", 2
				c.Debug.Address = "127.0.0.1:9100"
				c.Registry.DockerConfig = "/etc/lazyfs/auth.json"
			},
		},
		{
			name: "drain on stop, idle workers exit at once",
			doc:  "[shutdown]\nunmount_all = true\n[workers]\nidle_timeout = \"0s\"\n",
			want: func(c *config.Config) { c.Shutdown.UnmountAll, c.Workers.IdleTimeout = true, 0 },
		},
		{
			name: "dotted keys",
			doc:  "workers.mode = \"shared\"\ndebug.address = \":9100\"\n",
			want: func(c *config.Config) { c.Workers.Mode, c.Debug.Address = config.WorkersShared, ":9100" },
		},
		{
			name: "inline table",
			doc:  "layers = { max_entries = 10, max_toc_size = \"1GiB\" }\n",
			want: func(c *config.Config) { c.Layers.MaxEntries, c.Layers.MaxTOCSize = 10, config.GiB },
		},
		{
			name: "sizes as integers",
			doc:  "[layers]\nmax_toc_compressed_size = 1048576\nmax_toc_size = 0x100000\nmemory_cache_size = 2_097_152\n",
			want: func(c *config.Config) {
				c.Layers.MaxTOCCompressedSize, c.Layers.MaxTOCSize, c.Layers.MemoryCacheSize = config.MiB, config.MiB, 2*config.MiB
			},
		},
		{
			name: "sizes as strings",
			doc:  "[layers]\nmax_toc_compressed_size = \"512KiB\"\nmax_toc_size = \"100 MB\"\nmemory_cache_size = \"4096\"\n",
			want: func(c *config.Config) {
				c.Layers.MaxTOCCompressedSize, c.Layers.MaxTOCSize, c.Layers.MemoryCacheSize = 512*config.KiB, 100_000_000, 4096
			},
		},
		{
			name: "cache table",
			doc:  "[cache]\nsize = \"2GiB\"\ndir = \"/srv/lazyfs-cache\"\n",
			want: func(c *config.Config) { c.Cache.Size, c.Cache.Dir = 2*config.GiB, "/srv/lazyfs-cache" },
		},
		{
			name: "fetch table",
			doc:  "[fetch]\nconcurrency = 4\nprefetch = false\nbackground_concurrency = 1\nbackground_rate = \"20MiB\"\n",
			want: func(c *config.Config) {
				c.Fetch = config.FetchConfig{Concurrency: 4, Prefetch: false, BackgroundConcurrency: 1, BackgroundRate: 20 * config.MiB}
			},
		},
		{
			name: "cache off",
			doc:  "cache.size = 0\n",
			want: func(c *config.Config) { c.Cache.Size = 0 },
		},
		{
			name: "duration",
			doc:  "[workers]\nready_timeout = \"1m30s\"\n",
			want: func(c *config.Config) { c.Workers.ReadyTimeout = config.Duration(90 * time.Second) },
		},
		{
			name: "CRLF line endings and trailing comments",
			doc:  "root = \"/srv/lazyfs\" # moved\r\n[workers]\r\nfuse_readers = 8\r\n",
			want: func(c *config.Config) { c.Root, c.Workers.FuseReaders = "/srv/lazyfs", 8 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := config.Default()
			if tc.want != nil {
				tc.want(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse = %+v\nwant    %+v", got, want)
			}
		})
	}
}

// TestParseProblems checks the whole message: the key, the line and what is
// allowed are the point of it.
func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		// Unknown keys and tables.
		{
			name: "unknown top-level key",
			doc:  "root = \"/srv\"\nkeep_workers = true\n",
			want: []string{"config.toml:2: keep_workers: unknown key; the top-level keys are root, address, run_dir, log_level, log_dir, keep_workers_on_exit, debug, workers, layers, registry, shutdown, cache, fetch, containerd"},
		},
		{
			name: "unknown key in a table",
			doc:  "[workers]\nfuse_reader = 4\n",
			want: []string{"config.toml:2: workers.fuse_reader: unknown key; the keys of [workers] are mode, binary, fuse_readers, ready_timeout, recover_policy, crash_loop_count, crash_loop_window, restart_backoff, idle_timeout, health_interval, hung_timeout, logs"},
		},
		{
			name: "unknown dotted key",
			doc:  "layers.max_size = 1\n",
			want: []string{"config.toml:1: layers.max_size: unknown key; the keys of [layers] are max_toc_compressed_size, max_toc_size, max_entries, memory_cache_size, proof_wait, verify, proof_concurrency"},
		},
		{
			name: "unknown key in an inline table",
			doc:  "registry = { config_path = \"/etc/certs.d\", mirror = \"x\" }\n",
			want: []string{"config.toml:1: registry.mirror: unknown key; the keys of [registry] are config_path, docker_config, read_timeout"},
		},
		{
			name: "unknown table and the keys below it",
			doc:  "[prefetch]\nsize = 1\nmore = 2\n",
			want: []string{"config.toml:1: prefetch: unknown table; the top-level keys are root, address, run_dir, log_level, log_dir, keep_workers_on_exit, debug, workers, layers, registry, shutdown, cache, fetch, containerd"},
		},
		{
			name: "unknown key in [cache]",
			doc:  "[cache]\nsize = \"1GiB\"\nbudget = \"1GiB\"\n",
			want: []string{"config.toml:3: cache.budget: unknown key; the keys of [cache] are size, dir"},
		},
		{
			name: "unknown sub-table",
			doc:  "[debug.pprof]\n",
			want: []string{"config.toml:1: debug.pprof: unknown table; the keys of [debug] are address"},
		},
		// Wrong types.
		{
			name: "integer for a string",
			doc:  "root = 1\n",
			want: []string{"config.toml:1: root: must be a string, got an integer"},
		},
		{
			name: "string for an integer",
			doc:  "[workers]\nfuse_readers = \"4\"\n",
			want: []string{"config.toml:2: workers.fuse_readers: must be an integer, got a string"},
		},
		{
			name: "float for an integer",
			doc:  "layers.max_entries = 1e6\n",
			want: []string{"config.toml:1: layers.max_entries: must be an integer, got a float"},
		},
		{
			name: "string for a boolean",
			doc:  "keep_workers_on_exit = \"yes\"\n",
			want: []string{"config.toml:1: keep_workers_on_exit: must be true or false, got a string"},
		},
		{
			name: "float for a size",
			doc:  "[layers]\n\nmemory_cache_size = 1.5\n",
			want: []string{`config.toml:3: layers.memory_cache_size: must be an integer (bytes) or a string with a unit such as "64MiB" or "100MB", got a float`},
		},
		{
			name: "integer for a duration",
			doc:  "[workers]\nready_timeout = 10\n",
			want: []string{`config.toml:2: workers.ready_timeout: must be a duration string such as "10s", "500ms" or "1m30s", got an integer`},
		},
		{
			name: "array for a string",
			doc:  "log_dir = [\"/var/log\"]\n",
			want: []string{"config.toml:1: log_dir: must be a string, got an array"},
		},
		{
			name: "date for a string",
			doc:  "log_level = 2026-01-01\n",
			want: []string{"config.toml:1: log_level: must be a string, got a date or time"},
		},
		{
			name: "scalar for a table",
			doc:  "workers = \"shared\"\n",
			want: []string{"config.toml:1: workers: must be a table, got a string"},
		},
		{
			name: "array of tables for a table",
			doc:  "[[workers]]\nmode = \"shared\"\n",
			want: []string{"config.toml:1: workers: must be a table, got an array of tables"},
		},
		{
			name: "table header for a string",
			doc:  "[root]\npath = \"/srv\"\n",
			want: []string{"config.toml:1: root: must be a string, got a table"},
		},
		{
			name: "inline table for a string",
			doc:  "address = { path = \"/run/x.sock\" }\n",
			want: []string{"config.toml:1: address: must be a string, got a table"},
		},
		{
			name: "dotted key through a string",
			doc:  "workers.mode.kind = \"shared\"\n",
			want: []string{"config.toml:1: workers.mode: must be a string, got a table"},
		},
		// Values a type refuses.
		{
			name: "size with an unknown unit",
			doc:  "[layers]\nmax_toc_size = \"64 megs\"\n",
			want: []string{`config.toml:2: layers.max_toc_size: "64 megs" has an unknown unit "megs": want one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB`},
		},
		{
			name: "fractional size",
			doc:  "[layers]\nmax_toc_size = \"1.5GiB\"\n",
			want: []string{`config.toml:2: layers.max_toc_size: "1.5GiB" is not a size: want an integer (bytes) or a string with a unit such as "64MiB" or "100MB"`},
		},
		{
			name: "size too large",
			doc:  "[layers]\nmax_toc_size = \"9000000TiB\"\n",
			want: []string{`config.toml:2: layers.max_toc_size: "9000000TiB" is too large: at most 9223372036854775807 bytes`},
		},
		{
			name: "bad duration",
			doc:  "[workers]\nready_timeout = \"10 seconds\"\n",
			want: []string{`config.toml:2: workers.ready_timeout: "10 seconds" is not a duration: want a duration string such as "10s", "500ms" or "1m30s"`},
		},
		// Invalid values.
		{
			name: "relative paths",
			doc:  "root = \"var/lib/lazyfs\"\nrun_dir = \"\"\nlog_dir = \"./log\"\n",
			want: []string{
				`config.toml:1: root: "var/lib/lazyfs" is not an absolute path`,
				`config.toml:2: run_dir: "" is not an absolute path`,
				`config.toml:3: log_dir: "./log" is not an absolute path`,
			},
		},
		{
			name: "relative optional paths",
			doc:  "[workers]\nbinary = \"lazyfsd\"\n[registry]\nconfig_path = \"certs.d\"\ndocker_config = \"config.json\"\n",
			want: []string{
				`config.toml:2: workers.binary: "lazyfsd" is not an absolute path`,
				`config.toml:4: registry.config_path: "certs.d" is not an absolute path`,
				`config.toml:5: registry.docker_config: "config.json" is not an absolute path`,
			},
		},
		{
			name: "socket path too long",
			doc:  "address = \"/run/" + strings.Repeat("x", 100) + ".sock\"\n",
			want: []string{`config.toml:1: address: "/run/` + strings.Repeat("x", 100) + `.sock" is 110 bytes long: a unix socket path has at most 107`},
		},
		{
			name: "log level",
			doc:  "log_level = \"warning\"\n",
			want: []string{`config.toml:1: log_level: "warning" is not one of "trace", "debug", "info", "warn", "error"`},
		},
		{
			name: "worker mode",
			doc:  "[workers]\n\n\n\n\n\nmode = \"per-node\"\n",
			want: []string{`config.toml:7: workers.mode: "per-node" is not one of "per-image", "shared"`},
		},
		{
			name: "fuse readers bounds",
			doc:  "workers.fuse_readers = 1\n",
			want: []string{"config.toml:1: workers.fuse_readers: 1 is out of range: must be from 2 (a reader must stay free for the kernel's INTERRUPT) to 1024"},
		},
		{
			name: "fuse readers too many",
			doc:  "workers.fuse_readers = 100000\n",
			want: []string{"config.toml:1: workers.fuse_readers: 100000 is out of range: must be from 2 (a reader must stay free for the kernel's INTERRUPT) to 1024"},
		},
		{
			name: "durations that are not positive",
			doc:  "workers.ready_timeout = \"0s\"\n",
			want: []string{"config.toml:1: workers.ready_timeout: 0s is out of range: must be longer than 0s"},
		},
		{
			name: "negative duration",
			doc:  "workers.ready_timeout = \"-1s\"\n",
			want: []string{"config.toml:1: workers.ready_timeout: -1s is out of range: must be longer than 0s"},
		},
		{
			name: "negative idle timeout",
			doc:  "workers.idle_timeout = \"-1s\"\n",
			want: []string{"config.toml:1: workers.idle_timeout: -1s is out of range: must be 0s (exit at once) or longer"},
		},
		{
			name: "shutdown table",
			doc:  "[shutdown]\nunmount_all = \"yes\"\n",
			want: []string{"config.toml:2: shutdown.unmount_all: must be true or false, got a string"},
		},
		{
			name: "sizes that are not positive",
			doc:  "[layers]\nmax_toc_compressed_size = 0\nmax_toc_size = \"0MiB\"\nmemory_cache_size = -1\nmax_entries = -5\n",
			want: []string{
				"config.toml:2: layers.max_toc_compressed_size: 0 is out of range: must be more than 0 bytes",
				"config.toml:3: layers.max_toc_size: 0 is out of range: must be more than 0 bytes",
				"config.toml:4: layers.memory_cache_size: -1 is out of range: must be more than 0 bytes",
				"config.toml:5: layers.max_entries: -5 is out of range: must be at least 1",
			},
		},
		{
			name: "cache size negative and dir relative",
			doc:  "[cache]\nsize = -1\ndir = \"cache\"\n",
			want: []string{
				"config.toml:2: cache.size: -1 is out of range: must be 0 (no disk cache) or more",
				`config.toml:3: cache.dir: "cache" is not an absolute path`,
			},
		},
		{
			name: "cache size with an unknown unit",
			doc:  "cache.size = \"10 gigs\"\n",
			want: []string{`config.toml:1: cache.size: "10 gigs" has an unknown unit "gigs": want one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB`},
		},
		{
			name: "debug address without a port",
			doc:  "[debug]\naddress = \"localhost\"\n",
			want: []string{`config.toml:2: debug.address: "localhost" is not host:port with a port from 1 to 65535 (e.g. "127.0.0.1:9100"; "" turns it off)`},
		},
		{
			name: "debug address with port 0",
			doc:  "[debug]\naddress = \"127.0.0.1:0\"\n",
			want: []string{`config.toml:2: debug.address: "127.0.0.1:0" is not host:port with a port from 1 to 65535 (e.g. "127.0.0.1:9100"; "" turns it off)`},
		},
		{
			name: "debug address with a named port",
			doc:  "[debug]\naddress = \":http\"\n",
			want: []string{`config.toml:2: debug.address: ":http" is not host:port with a port from 1 to 65535 (e.g. "127.0.0.1:9100"; "" turns it off)`},
		},
		// Documents that are not valid TOML, or not for one config.
		{
			name: "table header over a string",
			doc:  "[workers]\nmode = \"shared\"\n[layers]\n[workers.mode]\n",
			want: []string{"config.toml:4: workers.mode: must be a string, got a table"},
		},
		{
			name: "dotted keys are relative to their table",
			doc:  "root = \"/a\"\n[workers]\nfuse_readers = 2\n[layers]\nworkers.fuse_readers = 3\n",
			want: []string{"config.toml:5: layers.workers: unknown key; the keys of [layers] are max_toc_compressed_size, max_toc_size, max_entries, memory_cache_size, proof_wait, verify, proof_concurrency"},
		},
		{
			name: "same key twice",
			doc:  "root = \"/a\"\nroot = \"/b\"\n",
			want: []string{"config.toml:2: root: defined twice (first on line 1)"},
		},
		{
			name: "table twice",
			doc:  "[workers]\nmode = \"shared\"\n[workers]\n",
			want: []string{"config.toml:3: workers: table workers already exists"},
		},
		{
			name: "syntax error",
			doc:  "root = \"/a\"\nlog_level = \n",
			want: []string{"config.toml:2: invalid TOML: unexpected character U+000A at start of value"},
		},
		{
			name: "problems before a syntax error are kept",
			doc:  "root = 1\n[workers\n",
			want: []string{
				"config.toml:1: root: must be a string, got an integer",
				"config.toml:2: invalid TOML: expected ']' to close table name",
			},
		},
		// Several problems of every kind, reported together in document order.
		{
			name: "everything at once",
			doc: `root = 5
foo = 1
[workers]
mode = "per-node"
fuse_readers = 1
ready_timeout = 10
[layers]
max_toc_size = "64 megs"
max_entries = 0
[bogus]
x = 1
[registry]
config_path = "rel"
`,
			want: []string{
				"config.toml:1: root: must be a string, got an integer",
				"config.toml:2: foo: unknown key; the top-level keys are root, address, run_dir, log_level, log_dir, keep_workers_on_exit, debug, workers, layers, registry, shutdown, cache, fetch, containerd",
				`config.toml:4: workers.mode: "per-node" is not one of "per-image", "shared"`,
				"config.toml:5: workers.fuse_readers: 1 is out of range: must be from 2 (a reader must stay free for the kernel's INTERRUPT) to 1024",
				`config.toml:6: workers.ready_timeout: must be a duration string such as "10s", "500ms" or "1m30s", got an integer`,
				`config.toml:8: layers.max_toc_size: "64 megs" has an unknown unit "megs": want one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB`,
				"config.toml:9: layers.max_entries: 0 is out of range: must be at least 1",
				"config.toml:10: bogus: unknown table; the top-level keys are root, address, run_dir, log_level, log_dir, keep_workers_on_exit, debug, workers, layers, registry, shutdown, cache, fetch, containerd",
				`config.toml:13: registry.config_path: "rel" is not an absolute path`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v", got)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error is not an invalid argument: %v", err)
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error is a %T, not a *config.Error", err)
			}
			if len(cerr.Problems) != len(tc.want) {
				t.Errorf("got %d problems, want %d", len(cerr.Problems), len(tc.want))
			}
			if want := strings.Join(tc.want, "\n"); err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
			if !reflect.DeepEqual(got, config.Config{}) {
				t.Errorf("a failed Parse returned a config: %+v", got)
			}
		})
	}
}
