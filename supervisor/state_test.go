package supervisor

import (
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/layout"
)

// TestWorkerState: the state shown by snapshotterctl follows from what the
// supervisor knows, in this order of precedence: a takeover under way, an
// exit, a stop, no control connection yet, mounts served, idle.
func TestWorkerState(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	ctl := &daemonapi.ControlClient{}
	mounts := map[string]*mountState{"m1": {}}
	for _, tc := range []struct {
		name string
		w    *worker
		want State
	}{
		{"taking over, exited too", &worker{takingOver: true, exited: exited, stopping: true}, StateTakingOver},
		{"exited while stopping", &worker{exited: exited, stopping: true, control: ctl}, StateExited},
		{"stopping", &worker{exited: make(chan struct{}), stopping: true, control: ctl, mounts: mounts}, StateStopping},
		{"starting: no control connection", &worker{exited: make(chan struct{}), mounts: mounts}, StateStarting},
		{"serving", &worker{exited: make(chan struct{}), control: ctl, mounts: mounts}, StateServing},
		{"ready: no mount", &worker{exited: make(chan struct{}), control: ctl, mounts: map[string]*mountState{}}, StateReady},
	} {
		if got := tc.w.state(); got != tc.want {
			t.Errorf("%s: state %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCorruptRegistryFailsStart: a workers.db record that does not parse
// fails New, naming the worker, rather than forgetting a worker that may
// still serve mounts.
func TestCorruptRegistryFailsStart(t *testing.T) {
	opts := workerConfigOptions(t)
	db, err := bolt.Open(layout.Root(opts.Root).WorkersDB(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(workersBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte("img-broken"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := New(context.Background(), opts)
	if err == nil {
		s.Close(context.Background(), false)
		t.Fatal("New accepted a corrupt worker record")
	}
	if !strings.Contains(err.Error(), "img-broken") || !strings.Contains(err.Error(), "corrupt record") {
		t.Fatalf("New: %v, want an error naming the corrupt record of img-broken", err)
	}
}

// TestRecordOnlyTheCurrentWorker guards record's check: a save racing with
// a worker's exit (or its replacement) writes nothing, so that it neither
// brings back a record handleExit removed nor overwrites the successor's.
func TestRecordOnlyTheCurrentWorker(t *testing.T) {
	reg, err := openRegistry(t.TempDir() + "/workers.db")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	old := &worker{id: "w1", pid: 100, mounts: map[string]*mountState{}}
	succ := &worker{id: "w1", pid: 200, mounts: map[string]*mountState{}}
	s := &Supervisor{reg: reg, workers: map[string]*worker{}}

	if err := s.record(old); err != nil {
		t.Fatal(err)
	}
	if recs, _ := reg.list(); len(recs) != 0 {
		t.Fatalf("a worker no longer registered was recorded: %+v", recs)
	}
	s.workers["w1"] = succ
	if err := s.record(succ); err != nil {
		t.Fatal(err)
	}
	if err := s.record(old); err != nil {
		t.Fatal(err)
	}
	if recs, _ := reg.list(); len(recs) != 1 || recs[0].PID != 200 {
		t.Fatalf("records %+v, want only the successor's (pid 200)", recs)
	}
}
