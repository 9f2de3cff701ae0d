package worker_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

// uncompressedDigest decompresses every gzip member of blob, independently
// of the worker's code path.
func uncompressedDigest(t *testing.T, blob []byte) (digest.Digest, int64) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h), n
}

// TestVerifyDigestsWholeBlob: the worker reports the digests of the blob
// the registry serves for the mount, compressed and uncompressed, and the
// verdict it is told shows in Info.
func TestVerifyDigestsWholeBlob(t *testing.T) {
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	load(t, w, e.request("m1", ""))
	ctx, cancel := testContext(t)
	defer cancel()

	info, err := w.Verify(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	diffID, n := uncompressedDigest(t, e.layer.Blob)
	want := daemonapi.VerifyInfo{
		MountID:          "m1",
		LayerDigest:      e.layer.Digest.String(),
		Digest:           e.layer.Digest.String(),
		Size:             int64(len(e.layer.Blob)),
		DiffID:           diffID.String(),
		UncompressedSize: n,
	}
	if info != want {
		t.Fatalf("Verify = %+v, want %+v", info, want)
	}

	if st := mountInfo(t, w, "m1"); st.Verification != daemonapi.Unverified {
		t.Errorf("before a verdict: verification %q, want %q", st.Verification, daemonapi.Unverified)
	}
	if err := w.SetVerdict(ctx, "m1", daemonapi.VerdictRequest{State: daemonapi.Forged, DiffID: diffID.String()}); err != nil {
		t.Fatal(err)
	}
	if st := mountInfo(t, w, "m1"); st.Verification != daemonapi.Forged || st.DiffID != diffID.String() {
		t.Errorf("after a verdict: %+v, want forged with diff id %s", st, diffID)
	}
	if _, err := w.Verify(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Verify of an unknown mount: %v, want not found", err)
	}
}

// TestVerifyReportsOtherBytes: a registry that serves other bytes under the
// layer's digest yields the digest of what it served, which the snapshotter
// then sees differ from the layer digest.
func TestVerifyReportsOtherBytes(t *testing.T) {
	e := newEnv(t)
	w := newWorker(t, e.root, false)
	load(t, w, e.request("m1", ""))
	other := testregistry.BuildLayer(t, "other")
	e.reg.ServeAs(e.layer.Digest, other.Blob)
	ctx, cancel := testContext(t)
	defer cancel()

	info, err := w.Verify(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	diffID, _ := uncompressedDigest(t, other.Blob)
	if info.LayerDigest != e.layer.Digest.String() || info.Digest != other.Digest.String() || info.DiffID != diffID.String() {
		t.Errorf("Verify = %+v, want layer digest %s, computed digest %s and diff id %s", info, e.layer.Digest, other.Digest, diffID)
	}
}

func mountInfo(t *testing.T, w interface {
	Info(ctx context.Context) (daemonapi.DaemonInfo, error)
}, id string) daemonapi.MountInfo {
	t.Helper()
	info, err := w.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range info.Mounts {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("mount %s not in %+v", id, info.Mounts)
	return daemonapi.MountInfo{}
}
