package daemonapi_test

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// verifyingBackend is a fakeBackend that proves layers.
type verifyingBackend struct {
	fakeBackend
	verified daemonapi.VerifyInfo
	verdicts []daemonapi.VerdictRequest
}

func (b *verifyingBackend) Verify(ctx context.Context, mountID string) (daemonapi.VerifyInfo, error) {
	return b.verified, b.record(ctx, "verify "+mountID)
}

func (b *verifyingBackend) SetVerdict(ctx context.Context, mountID string, v daemonapi.VerdictRequest) error {
	b.mu.Lock()
	b.verdicts = append(b.verdicts, v)
	b.mu.Unlock()
	return b.record(ctx, "verdict "+mountID)
}

func TestVerifyAndVerdict(t *testing.T) {
	ctx := testContext(t)
	b := &verifyingBackend{verified: daemonapi.VerifyInfo{
		MountID: "12", LayerDigest: layerDigest, Digest: layerDigest, Size: 10, DiffID: tocDigest, UncompressedSize: 20,
	}}
	c, _ := startAPI(t, b)

	got, err := c.Verify(ctx, "12")
	if err != nil || got != b.verified {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, b.verified)
	}
	v := daemonapi.VerdictRequest{State: daemonapi.Forged, DiffID: tocDigest}
	if err := c.SetVerdict(ctx, "12", v); err != nil {
		t.Fatal(err)
	}
	if len(b.verdicts) != 1 || b.verdicts[0] != v {
		t.Errorf("verdicts reaching the backend: %+v, want [%+v]", b.verdicts, v)
	}
	for _, bad := range []daemonapi.VerdictRequest{{State: "maybe"}, {State: daemonapi.Verified, DiffID: "sha256:zz"}} {
		if err := c.SetVerdict(ctx, "12", bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("SetVerdict %+v: %v, want invalid argument", bad, err)
		}
	}
	if _, err := c.Verify(ctx, "-bad"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Verify of a malformed mount id: %v, want invalid argument", err)
	}
	if calls, _ := b.recorded(); len(calls) != 2 {
		t.Errorf("calls reaching the backend: %q, want the valid verify and verdict only", calls)
	}
}

// TestVerifyNotImplemented: a backend that does not prove layers answers
// with a class the snapshotter can tell from a failed proof.
func TestVerifyNotImplemented(t *testing.T) {
	c, _ := startAPI(t, &fakeBackend{})
	if _, err := c.Verify(testContext(t), "12"); !errdefs.IsNotImplemented(err) {
		t.Errorf("Verify: %v, want not implemented", err)
	}
}
