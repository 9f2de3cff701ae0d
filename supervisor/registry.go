package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/log"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/layer"
)

// record is what workers.db keeps of a worker, enough for a restarted
// snapshotter to find it, check it is the same process, and know its mounts.
type record struct {
	// Version is recordVersion when written; records of version 1 (no
	// INIT state) are read as mounts that cannot be taken over, records
	// of versions 1 and 2 name each mount's layer by its labels.
	Version       int                    `json:"version,omitempty"`
	ID            string                 `json:"id"`
	PID           int                    `json:"pid"`
	StartTime     uint64                 `json:"start_time"` // /proc/<pid>/stat field 22: guards against pid reuse
	APISocket     string                 `json:"api_socket"`
	ControlSocket string                 `json:"control_socket"`
	Mounts        map[string]mountRecord `json:"mounts"` // by mount id
}

type mountRecord struct {
	Mountpoint string `json:"mountpoint"`
	// Layer is the layer the mount serves (version 3 on).
	Layer *layer.Layer `json:"layer,omitempty"`
	// Labels are what records of versions 1 and 2 kept instead of Layer:
	// the snapshot's labels, read once at adoption through
	// Options.ParseLegacyLabels.
	Labels map[string]string `json:"labels,omitempty"`
	// Init is the connection's FUSE INIT exchange: with the fd from the
	// systemd fd store, what a successor needs to take the connection over
	// after the snapshotter and the worker died together.
	Init failover.InitState `json:"init"`
}

// recordVersion is the version of the record format written.
const recordVersion = 3

var workersBucket = []byte("workers")

// registry is workers.db.
type registry struct {
	db *bolt.DB
}

func openRegistry(path string) (*registry, error) {
	// A timeout, not bbolt's default of waiting forever, when another
	// snapshotter holds the file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("worker registry %s is locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("failed to open worker registry %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(workersBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("failed to initialise worker registry %s: %w", path, err)
	}
	return &registry{db: db}, nil
}

func (r *registry) put(rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return r.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(workersBucket).Put([]byte(rec.ID), data)
	})
}

func (r *registry) delete(id string) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(workersBucket).Delete([]byte(id))
	})
}

func (r *registry) list() ([]record, error) {
	var recs []record
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(workersBucket).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("worker %s: corrupt record: %w", k, err)
			}
			recs = append(recs, rec)
			return nil
		})
	})
	return recs, err
}

func (r *registry) close() error { return r.db.Close() }

// record saves w's record unless w is no longer the worker of its id: a
// save racing with the worker's exit (an idle worker exits right after its
// last detach) must neither bring back the record handleExit removed nor
// overwrite the record of a successor with the same id.
//
// The caller holds w.id's lock, so the worker of the id cannot change
// between the check and the write; the write (an fsync) runs outside s.mu,
// which every reader of the worker table needs.
func (s *Supervisor) record(w *worker) error {
	if s.current(w.id) != w {
		return nil
	}
	return s.reg.put(w.record())
}

// recordedLayer is the layer of a recorded mount. Records written before
// version 3 carry the snapshot's labels instead, which only the
// snapshotter knows how to read (Options.ParseLegacyLabels). A mount whose
// layer cannot be known keeps being served and held, but a successor
// cannot load it: a takeover of it fails and its readers get errors.
func (s *Supervisor) recordedLayer(ctx context.Context, id string, m mountRecord) layer.Layer {
	if m.Layer != nil {
		return *m.Layer
	}
	if s.opts.ParseLegacyLabels != nil && m.Labels != nil {
		l, err := s.opts.ParseLegacyLabels(m.Labels)
		if err == nil {
			return l
		}
		log.G(ctx).WithError(err).WithField("mount_id", id).Warn("cannot read the layer of a recorded mount")
		return layer.Layer{}
	}
	log.G(ctx).WithField("mount_id", id).Warn("recorded mount names no layer")
	return layer.Layer{}
}
