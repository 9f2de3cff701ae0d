package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/log"
)

// incidentsFile keeps the forged layers found, under the root: the forged
// snapshot itself is removed once unused (so that the next pull unpacks
// the real layer), but an operator must still learn of the incident after
// that, and after a restart.
const incidentsFile = "incidents.json"

// maxIncidents bounds the record: the newest are kept.
const maxIncidents = 100

// Incident is a lazily mounted layer found forged: its blob does not have
// the DiffID its image's config claims.
type Incident struct {
	Time        time.Time `json:"time"`
	Snapshot    string    `json:"snapshot"`
	ChainID     string    `json:"chain_id"`
	ImageRef    string    `json:"image_ref"`
	LayerDigest string    `json:"layer_digest"`
	// ClaimedDiffID is what the image's config claims (for a layer on a
	// parent, named through the chain IDs: a chain ID is a hash of it).
	ClaimedDiffID string `json:"claimed_diff_id"`
	// ComputedDiffID is what the blob decompresses to, or why it does not.
	ComputedDiffID string `json:"computed_diff_id"`
}

// incidents is the record, loaded at New and rewritten on each incident.
type incidents struct {
	mu   sync.Mutex
	path string
	list []Incident
}

func loadIncidents(root string) (*incidents, error) {
	in := &incidents{path: filepath.Join(root, incidentsFile)}
	b, err := os.ReadFile(in.path)
	if errors.Is(err, os.ErrNotExist) {
		return in, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the incident record: %w", err)
	}
	if err := json.Unmarshal(b, &in.list); err != nil {
		return nil, fmt.Errorf("incident record %s: %w", in.path, err)
	}
	return in, nil
}

// add records i and writes the record (a temp file renamed over it: a
// crash leaves the old record or the new one).
func (in *incidents) add(ctx context.Context, i Incident) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.list = append(in.list, i)
	if len(in.list) > maxIncidents {
		in.list = slices.Clone(in.list[len(in.list)-maxIncidents:])
	}
	b, err := json.MarshalIndent(in.list, "", "  ")
	if err == nil {
		tmp := in.path + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, in.path)
		}
	}
	if err != nil {
		log.G(ctx).WithError(err).Error("failed to write the incident record; the incident stays in this log and the metric")
	}
}

// Incidents returns the forged layers found, oldest first, also those of
// earlier runs (the newest 100).
func (s *Snapshotter) Incidents() []Incident {
	s.incidents.mu.Lock()
	defer s.incidents.mu.Unlock()
	return slices.Clone(s.incidents.list)
}
