package snapshot

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	_ "github.com/containerd/containerd/v2/pkg/testutil" // registers -test.root
	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/layout"
)

// TestMain turns on containerd's root-only tests (-test.root) when running as
// root, so that a plain `go test ./...` as root runs the whole conformance suite.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 {
		if err := flag.Set("test.root", "true"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// TestConformance runs containerd's own snapshotter suite twice: on the
// plain snapshotter, and with a fake remote-layer backend plugged in (as
// the snapshotter runs in production), so that wiring the lazy path in
// changes nothing containerd relies on. The name "overlayfs" selects the
// suite's expectations for overlay-based snapshotters (E2E-NOTES.md); the
// suite needs -test.root to mount.
func TestConformance(t *testing.T) {
	testreq.RequireRoot(t)
	if f := flag.Lookup("test.root"); f == nil || f.Value.String() != "true" {
		t.Fatal("-test.root is off: containerd's suite would skip its mounting tests")
	}
	t.Run("plain", func(t *testing.T) {
		testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			s, err := New(ctx, root)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		})
	})
	t.Run("remote", func(t *testing.T) {
		var (
			mu    sync.Mutex
			fakes []*fakeRemote
		)
		// The suite sends no remote-snapshot labels, so nothing is
		// mounted lazily; but Prepare and View of a child must have asked
		// the backend whether its parents are being mounted again. Checked
		// in Cleanup: the suite's subtests run in parallel, after this
		// function returns.
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			var waits int
			for _, fr := range fakes {
				fr.mu.Lock()
				waits += fr.waits
				if len(fr.mounted) != 0 {
					t.Errorf("the suite mounted layers lazily: %v", fr.mounted)
				}
				fr.mu.Unlock()
			}
			if waits == 0 {
				t.Error("the remote backend was never consulted: the suite ran without the lazy path")
			}
		})
		testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			fr := newFakeRemote()
			mu.Lock()
			fakes = append(fakes, fr)
			mu.Unlock()
			s, err := New(ctx, root, WithRemoteLayers(fr), noBackgroundProofs)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		})
	})
}

func testContext(t *testing.T) context.Context {
	return namespaces.WithNamespace(context.Background(), "test")
}

// TestLabelsSurviveCommit guards the lookup containerd does after a remote
// snapshot reports ErrAlreadyExists: a Walk filtered on the ref label.
func TestLabelsSurviveCommit(t *testing.T) {
	ctx := testContext(t)
	s, err := New(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const ref = "containerd.io/snapshot.ref"
	labels := map[string]string{ref: "sha256:abc", "containerd.io/snapshot/cri.layer-digest": "sha256:def"}
	if _, err := s.Prepare(ctx, "extract-1", "", snapshots.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "sha256:abc", "extract-1", snapshots.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	var found []snapshots.Info
	err = s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		found = append(found, info)
		return nil
	}, `labels."containerd.io/snapshot.ref"==sha256:abc`)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Name != "sha256:abc" || found[0].Kind != snapshots.KindCommitted {
		t.Fatalf("walk by ref label found %+v, want the committed snapshot", found)
	}
	for k, v := range labels {
		if found[0].Labels[k] != v {
			t.Errorf("label %s = %q after commit, want %q", k, found[0].Labels[k], v)
		}
	}
	if _, err := s.Prepare(ctx, "extract-2", "", snapshots.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "sha256:abc", "extract-2"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second commit under the same name: %v, want already exists", err)
	}
}

// TestCrashLeftoversRemovedAtStart guards the crash-safety promise: a
// half-built directory and the directory of a snapshot whose removal was
// interrupted are gone after a restart, and live snapshots are untouched.
func TestCrashLeftoversRemovedAtStart(t *testing.T) {
	ctx := testContext(t)
	root := t.TempDir()
	s, err := New(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "live", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"new-123456", "999"} {
		if err := os.MkdirAll(layout.Root(root).SnapshotFS(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	s, err = New(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := os.ReadDir(layout.Root(root).Snapshots())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 {
		t.Fatalf("snapshot dirs after restart: %v, want only the live snapshot's", names)
	}
	mounts, err := s.Mounts(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	if got := mounts[0].Source; got != layout.Root(root).SnapshotFS(names[0]) {
		t.Fatalf("live snapshot mounts %s, its directory is %s", got, names[0])
	}
}

// TestSecondInstanceFailsFast guards against bbolt's default of waiting for
// the file lock forever when two snapshotters share a root.
func TestSecondInstanceFailsFast(t *testing.T) {
	ctx := testContext(t)
	root := t.TempDir()
	s, err := New(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	start := time.Now()
	_, err = New(ctx, root, WithDBTimeout(200*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second snapshotter on one root: %v, want a lock error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second snapshotter took %s to fail", d)
	}
}

func TestMountsShape(t *testing.T) {
	ctx := testContext(t)
	root := t.TempDir()
	s, err := New(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// dirs: each committed layer's directory, as its Prepare showed it.
	dirs := map[string]string{}
	for i, key := range []string{"l1", "l2"} {
		parent := ""
		if i > 0 {
			parent = "c1"
		}
		m, err := s.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			dirs["c1"] = m[0].Source
		}
		if err := s.Commit(ctx, "c"+key[1:], key); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, kind, parent string
		wantType           string
		wantOpts           []string
		// wantNot: options that must be absent (a view is never
		// writable: no rw, no upper dir).
		wantNot []string
	}{
		{"active on two layers", "active", "c2", "overlay", []string{"upperdir=", "workdir=", "lowerdir="}, []string{"ro"}},
		{"view of one layer", "view", "c1", "bind", []string{"ro", "rbind"}, []string{"rw"}},
		{"view of two layers", "view", "c2", "overlay", []string{"lowerdir="}, []string{"upperdir=", "workdir="}},
		{"active without parent", "active", "", "bind", []string{"rw", "rbind"}, []string{"ro"}},
		{"view without parent", "view", "", "bind", []string{"ro", "rbind"}, []string{"rw"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "k" + string(rune('a'+i))
			var err error
			if tc.kind == "view" {
				_, err = s.View(ctx, key, tc.parent)
			} else {
				_, err = s.Prepare(ctx, key, tc.parent)
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Mounts(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 1 || m[0].Type != tc.wantType {
				t.Fatalf("mounts %+v, want one %s mount", m, tc.wantType)
			}
			opts := strings.Join(m[0].Options, ",")
			for _, want := range tc.wantOpts {
				if !hasOption(m[0].Options, want) {
					t.Errorf("options %q lack %q", opts, want)
				}
			}
			for _, not := range tc.wantNot {
				if hasOption(m[0].Options, not) {
					t.Errorf("options %q have %q", opts, not)
				}
			}
			// The bind source is the snapshot's own directory, or the
			// parent's for a view of one layer.
			if tc.wantType == "bind" {
				want := filepath.Join(root, "snapshots")
				if !strings.HasPrefix(m[0].Source, want) || !strings.HasSuffix(m[0].Source, "/fs") {
					t.Errorf("bind source %q, want a snapshot's fs dir under %s", m[0].Source, want)
				}
				if tc.parent != "" && m[0].Source != dirs[tc.parent] {
					t.Errorf("bind source %q, want the parent's dir %s", m[0].Source, dirs[tc.parent])
				}
			}
		})
	}
}

// hasOption tells whether opts has want: the option itself, or, for a
// want ending in "=", an option with that key.
func hasOption(opts []string, want string) bool {
	for _, o := range opts {
		if o == want || strings.HasSuffix(want, "=") && strings.HasPrefix(o, want) {
			return true
		}
	}
	return false
}
