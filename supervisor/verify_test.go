package supervisor

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// fakeWorkerAPI answers a worker's verify and verdict requests on a unix
// socket, as a (possibly hostile) worker would.
type fakeWorkerAPI struct {
	mu       sync.Mutex
	verify   daemonapi.VerifyInfo
	verifies int
	verdicts []daemonapi.VerdictRequest
}

func (f *fakeWorkerAPI) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, daemonapi.PathVerifySuffix):
			f.verifies++
			json.NewEncoder(w).Encode(f.verify)
		case strings.HasSuffix(r.URL.Path, daemonapi.PathVerdictSuffix):
			var v daemonapi.VerdictRequest
			json.NewDecoder(r.Body).Decode(&v)
			f.verdicts = append(f.verdicts, v)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// supervisorWith is a Supervisor whose only worker, w1, serves mount m1
// through api.
func supervisorWith(t *testing.T, api *fakeWorkerAPI) (*Supervisor, *mountState) {
	m := &mountState{id: "m1"}
	w := &worker{id: "w1", pid: 4242, api: daemonapi.NewClient(api.serve(t), "w1"), exited: make(chan struct{}), mounts: map[string]*mountState{"m1": m}}
	return &Supervisor{workers: map[string]*worker{"w1": w}, pending: newPendingMounts()}, m
}

// TestVerifyParsesTheWorkersDigests: what a worker answers about its blob
// is parsed as digests, and an answer that is none is refused, not passed
// on for the snapshotter to judge a layer by.
func TestVerifyParsesTheWorkersDigests(t *testing.T) {
	good := daemonapi.VerifyInfo{MountID: "m1", Digest: digest.FromString("blob").String(), Size: 10, DiffID: digest.FromString("tar").String(), UncompressedSize: 20}
	for _, tc := range []struct {
		name    string
		mutate  func(*daemonapi.VerifyInfo)
		wantErr string
	}{
		{"digests", func(*daemonapi.VerifyInfo) {}, ""},
		{"undecompressable: no diff id", func(i *daemonapi.VerifyInfo) { i.DiffID, i.DecompressError = "", "gzip: invalid header" }, ""},
		{"malformed digest", func(i *daemonapi.VerifyInfo) { i.Digest = "sha256:xyz" }, "digest \"sha256:xyz\""},
		{"no digest", func(i *daemonapi.VerifyInfo) { i.Digest = "" }, "digest \"\""},
		{"malformed diff id", func(i *daemonapi.VerifyInfo) { i.DiffID = "md5:00" }, "diff id \"md5:00\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeWorkerAPI{verify: good}
			tc.mutate(&api.verify)
			s, _ := supervisorWith(t, api)
			got, err := s.Verify(context.Background(), "m1")
			if tc.wantErr != "" {
				if !errdefs.IsUnknown(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Verify = %+v, %v; want an error naming %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest.String() != api.verify.Digest || got.DiffID.String() != api.verify.DiffID || got.Size != 10 ||
				got.UncompressedSize != 20 || got.DecompressError != api.verify.DecompressError {
				t.Fatalf("Verify = %+v, want the worker's answer %+v", got, api.verify)
			}
		})
	}
}

// TestVerifyWaitsForPendingMounts: a mount being mounted again is not
// proven through a worker that does not serve it yet; one no worker serves
// is not found.
func TestVerifyWaitsForPendingMounts(t *testing.T) {
	api := &fakeWorkerAPI{verify: daemonapi.VerifyInfo{Digest: digest.FromString("blob").String()}}
	s, _ := supervisorWith(t, api)
	s.pending.begin("m1")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Verify(ctx, "m1"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Verify of a pending mount: %v, want unavailable", err)
	}
	if api.verifies != 0 {
		t.Fatal("a pending mount's worker was asked to verify it")
	}
	if _, err := s.Verify(context.Background(), "m2"); !errdefs.IsNotFound(err) {
		t.Fatalf("Verify of a mount no worker serves: %v, want not found", err)
	}
	if err := s.SetVerdict(context.Background(), "m2", false, ""); !errdefs.IsNotFound(err) {
		t.Fatalf("SetVerdict of a mount no worker serves: %v, want not found", err)
	}
	if _, err := s.Accesses(context.Background(), "m2"); !errdefs.IsNotFound(err) {
		t.Fatalf("Accesses of a mount no worker serves: %v, want not found", err)
	}
	if err := s.ResetAccesses(context.Background(), "m2"); !errdefs.IsNotFound(err) {
		t.Fatalf("ResetAccesses of a mount no worker serves: %v, want not found", err)
	}
}

// TestSetVerdictIsToldAndKept: the worker is told forged or verified as
// found, and the mount keeps the verdict, so that a successor is told too.
func TestSetVerdictIsToldAndKept(t *testing.T) {
	api := &fakeWorkerAPI{}
	s, m := supervisorWith(t, api)
	diffID := digest.FromString("tar")
	for _, forged := range []bool{true, false} {
		if err := s.SetVerdict(context.Background(), "m1", forged, diffID); err != nil {
			t.Fatal(err)
		}
		want := daemonapi.Verified
		if forged {
			want = daemonapi.Forged
		}
		api.mu.Lock()
		got := api.verdicts[len(api.verdicts)-1]
		api.mu.Unlock()
		if got.State != want || got.DiffID != diffID.String() {
			t.Fatalf("worker told %+v for forged=%v, want %s %s", got, forged, want, diffID)
		}
		if m.verdict == nil || *m.verdict != got {
			t.Fatalf("mount keeps verdict %+v, want %+v", m.verdict, got)
		}
	}
}
