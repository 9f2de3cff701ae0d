package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIncidentsBound: the record keeps the newest maxIncidents, oldest
// first: the edge passes whole, one more drops the oldest.
func TestIncidentsBound(t *testing.T) {
	ctx := testContext(t)
	in, err := loadIncidents(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxIncidents {
		in.add(ctx, Incident{Snapshot: fmt.Sprint(i)})
	}
	if len(in.list) != maxIncidents || in.list[0].Snapshot != "0" {
		t.Fatalf("%d incidents kept of %d, first %q", len(in.list), maxIncidents, in.list[0].Snapshot)
	}
	in.add(ctx, Incident{Snapshot: "last"})
	if len(in.list) != maxIncidents {
		t.Fatalf("%d incidents kept, want the newest %d", len(in.list), maxIncidents)
	}
	if in.list[0].Snapshot != "1" || in.list[maxIncidents-1].Snapshot != "last" {
		t.Fatalf("kept %q … %q, want 1 … last", in.list[0].Snapshot, in.list[maxIncidents-1].Snapshot)
	}
}

// TestIncidentsSurviveRestarts: an incident is on disk (0600) at once and
// a new snapshotter on the same root reports it; a record that does not
// parse fails start-up, naming the file, rather than being dropped.
func TestIncidentsSurviveRestarts(t *testing.T) {
	ctx := testContext(t)
	root := t.TempDir()
	s, err := New(ctx, root, noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Incidents(); len(got) != 0 {
		t.Fatalf("a new root has incidents: %+v", got)
	}
	s.incidents.add(ctx, Incident{Snapshot: "forged-1", LayerDigest: "sha256:aa"})
	s.Close()
	path := filepath.Join(root, incidentsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("incident record mode %v, want 0600", fi.Mode().Perm())
	}

	s, err = New(ctx, root, noBackgroundProofs)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Incidents()
	s.Close()
	if len(got) != 1 || got[0].Snapshot != "forged-1" || got[0].LayerDigest != "sha256:aa" {
		t.Fatalf("incidents after a restart: %+v", got)
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := New(ctx, root, noBackgroundProofs); err == nil {
		s.Close()
		t.Fatal("a corrupt incident record was accepted")
	} else if !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt record: %v, want the error to name %s", err, path)
	}
}
