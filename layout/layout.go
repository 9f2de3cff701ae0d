// Package layout names every file and directory lazyfs keeps under its
// three directories: the root (state that survives a reboot), the run dir
// (sockets) and the log dir. The snapshotter, the worker and snapshotterctl
// take their paths from here, so that each is spelled once.
//
// The names are on-disk state: an upgraded snapshotter must find what the
// previous one left. Never rename one without a migration.
package layout

import "path/filepath"

// Defaults of the config's root, run_dir and log_dir.
const (
	DefaultRoot   = "/var/lib/lazyfs"
	DefaultRunDir = "/run/lazyfs"
	DefaultLogDir = "/var/log/lazyfs"
)

// Root is the snapshotter's root directory (config root).
type Root string

// MetadataDB is the snapshots' bbolt metastore.
func (r Root) MetadataDB() string { return filepath.Join(string(r), "metadata.db") }

// WorkersDB is the worker registry (supervisor).
func (r Root) WorkersDB() string { return filepath.Join(string(r), "workers.db") }

// Snapshots holds one directory per snapshot, named by its id.
func (r Root) Snapshots() string { return filepath.Join(string(r), "snapshots") }

// Snapshot is snapshot id's directory.
func (r Root) Snapshot(id string) string { return filepath.Join(r.Snapshots(), id) }

// SnapshotFS is snapshot id's contents: an overlay upper dir, or the
// mountpoint of a lazily loaded layer.
func (r Root) SnapshotFS(id string) string { return FS(r.Snapshot(id)) }

// SnapshotWork is snapshot id's overlay work dir.
func (r Root) SnapshotWork(id string) string { return Work(r.Snapshot(id)) }

// FS is the contents dir inside a snapshot's directory dir (also one under
// construction).
func FS(dir string) string { return filepath.Join(dir, "fs") }

// Work is the overlay work dir inside a snapshot's directory dir.
func Work(dir string) string { return filepath.Join(dir, "work") }

// Cache is the chunk cache's default directory (config cache.dir).
func (r Root) Cache() string { return filepath.Join(string(r), "cache") }

// TOCs is where workers keep the verified tables of contents.
func (r Root) TOCs() string { return filepath.Join(string(r), "tocs") }

// RunDir is the directory of the sockets (config run_dir).
type RunDir string

// SnapshotterSocket is the default gRPC socket containerd dials (config
// address).
func (d RunDir) SnapshotterSocket() string { return filepath.Join(string(d), "snapshotter.sock") }

// MgmtSocket is the management API's socket (snapshotterctl).
func (d RunDir) MgmtSocket() string { return filepath.Join(string(d), "api.sock") }

// Workers holds one directory per worker id.
func (d RunDir) Workers() string { return filepath.Join(string(d), "workers") }

// Worker is worker id's directory (mode 0700).
func (d RunDir) Worker(id string) string { return filepath.Join(d.Workers(), id) }

// WorkerAPISocket is worker id's HTTP API socket.
func (d RunDir) WorkerAPISocket(id string) string { return filepath.Join(d.Worker(id), "api.sock") }

// WorkerControlSocket is worker id's control socket.
func (d RunDir) WorkerControlSocket(id string) string {
	return filepath.Join(d.Worker(id), "control.sock")
}

// LogDir is the directory of the logs (config log_dir).
type LogDir string

// Daemons holds the workers' logs.
func (d LogDir) Daemons() string { return filepath.Join(string(d), "daemons") }

// WorkerLog is worker id's rotated log file.
func (d LogDir) WorkerLog(id string) string { return filepath.Join(d.Daemons(), id+".log") }

// WorkerConfig is the workers' configuration file (daemonapi.WorkerConfig),
// written by the snapshotter at start-up, read by every lazyfsd it starts.
func (d RunDir) WorkerConfig() string { return filepath.Join(d.Workers(), "config.json") }
