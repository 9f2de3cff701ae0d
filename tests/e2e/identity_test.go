package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/log/logtest"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// proofsOff is the snapshotter config of tests that count what the
// registry serves or run without it: no layer is proven in the background
// and no container waits for a proof.
var proofsOff = map[string]any{"layers": map[string]any{"verify": "background", "proof_concurrency": 0}}

// poisonPath is the file only the attacker's layer has.
const poisonPath = "/POISONED"

// TestForgedLayerNeverReachesAnotherNamespace is point 0 of issue 14, as an
// attacker would try it: image E (one eStargz layer: busybox and
// /POISONED, with a correct TOC digest) whose config claims the DiffID of
// the real base layer of image H is pulled lazily in one namespace, then H
// in another. lazyfs meets another blob at H's chain ID, proves the stored
// one, finds it forged: the incident is in the snapshotter's log, its
// metric and the worker's report of the mount, and H's container runs on
// H's own blob, never seeing /POISONED. The control: H again in a third
// namespace (the same blob at the chain ID) is answered "already exists"
// with no new mount and no new proof.
func TestForgedLayerNeverReachesAnotherNamespace(t *testing.T) {
	s := startStack(t, harness.V2)
	honest, attacker := s.pushForgery(t)

	start := time.Now()
	s.ctrIn(t, "attacker", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", attacker.ref)
	t.Logf("attacker's image pulled lazily in namespace attacker in %v", time.Since(start).Round(time.Millisecond))
	// What the attack relies on: the forged layer is mounted lazily at the
	// real base layer's chain ID.
	if m := fuseMounts(t, s.snap); len(m) != 1 {
		t.Fatalf("FUSE mounts after the attacker's pull: %v, want one", m)
	}

	start = time.Now()
	s.ctrIn(t, "honest", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
	t.Logf("honest image pulled lazily in namespace honest in %v (includes the proof of the stored layer)", time.Since(start).Round(time.Millisecond))
	if out := s.runIn(t, "honest", honest.ref, "honest-check"); out != "clean\n" {
		t.Errorf("container of the honest image printed %q, want \"clean\" (it must never see %s)", out, poisonPath)
	}

	// Every lazy layer is proven in the background (point 1): the
	// attacker's is found forged, the honest one verified.
	s.waitProofs(t, map[string]float64{"verified": 1, "forged": 1, "error": 0})
	page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
	if got, ok := metricValue(t, page, "lazyfs_forged_layers_total", nil); !ok || got != 1 {
		t.Errorf("lazyfs_forged_layers_total = %v (present: %v), want 1", got, ok)
	}
	s.checkIncident(t, attacker, honest.diffID)
	// What an operator sees with snapshotterctl daemons inspect: the blob
	// each mount serves and its verdict. The forged layer's mount goes
	// once its snapshot is removed (nothing uses it in namespace attacker).
	waitFor(t, time.Minute, "the forged layer's mount removed", func() (bool, string) {
		var served []string
		for _, w := range liveWorkers(t, s.snap) {
			for _, m := range w.Mounts {
				served = append(served, fmt.Sprintf("%s %s %s", m.LayerDigest, m.Verification, m.DiffID))
			}
		}
		return slices.Equal(served, []string{fmt.Sprintf("%s %s %s", honest.layer, daemonapi.Verified, honest.diffID)}), fmt.Sprintf("workers serve %q", served)
	})

	// Control: the same honest image in another namespace finds its own
	// blob at the chain ID: already exists, no new mount, no new proof
	// (the background proofs are done: waitProofs above).
	mounts := len(fuseMounts(t, s.snap))
	s.ctrIn(t, "again", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
	if got := len(fuseMounts(t, s.snap)); got != mounts {
		t.Errorf("FUSE mounts after the same image in another namespace: %d, want %d (reused)", got, mounts)
	}
	page = httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
	for _, result := range []string{"verified", "forged", "error"} {
		got, _ := metricValue(t, page, "lazyfs_layer_proofs_total", map[string]string{"result": result})
		if want := map[string]float64{"forged": 1, "verified": 1}[result]; got != want {
			t.Errorf(`lazyfs_layer_proofs_total{result=%q} = %v, want %v`, result, got, want)
		}
	}
	if out := s.runIn(t, "again", honest.ref, "again-check"); out != "clean\n" {
		t.Errorf("container of the honest image in namespace again printed %q, want \"clean\"", out)
	}
}

// TestForgedLayerAfterHonestChangesNothing is the same attack the other
// way round: the honest image H is pulled first, then the attacker's E in
// another namespace. E's Prepare meets H's blob at the chain ID its config
// claims; the stored layer is proven (its blob has that DiffID), so E gets
// H's real layer: H's containers see what they saw, E's get no /POISONED
// either, and there is no incident.
func TestForgedLayerAfterHonestChangesNothing(t *testing.T) {
	s := startStack(t, harness.V2)
	honest, attacker := s.pushForgery(t)

	s.ctrIn(t, "honest", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
	start := time.Now()
	s.ctrIn(t, "attacker", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", attacker.ref)
	t.Logf("attacker's image pulled in namespace attacker in %v (includes the proof of the stored layer)", time.Since(start).Round(time.Millisecond))

	for _, c := range []struct{ ns, ref, id string }{
		{"honest", honest.ref, "honest-check"},
		{"attacker", attacker.ref, "attacker-check"},
	} {
		if out := s.runIn(t, c.ns, c.ref, c.id); out != "clean\n" {
			t.Errorf("container of %s in namespace %s printed %q, want \"clean\"", c.ref, c.ns, out)
		}
	}
	// One proof of the one layer mounted (in the background, or for the
	// attacker's Prepare, whichever came first: prove runs it once).
	s.waitProofs(t, map[string]float64{"verified": 1, "forged": 0, "error": 0})
	var served []string
	for _, w := range liveWorkers(t, s.snap) {
		for _, m := range w.Mounts {
			served = append(served, fmt.Sprintf("%s %s %s", m.LayerDigest, m.Verification, m.DiffID))
		}
	}
	if want := []string{fmt.Sprintf("%s %s %s", honest.layer, daemonapi.Verified, honest.diffID)}; !slices.Equal(served, want) {
		t.Errorf("workers serve %q, want only the honest layer, verified: %q", served, want)
	}
}

// TestForgedLayerBeforeHonestInOneNamespace is issue 14's attack where
// containerd gives lazyfs no second Prepare: E and H pulled lazily in one
// namespace, E first. containerd's unpacker skips H's layer (its chain ID
// exists), so without proofs H would run on E's layer. A container of H
// never sees /POISONED:
//   - default settings (verify = "before-share", background proofs on):
//     E's layer is proven in the background as soon as it is mounted and
//     found forged (the proof is one full fetch of its blob), its snapshot
//     removed from containerd, and H's container runs on H's own layer,
//     pulled again if the removal came after H's pull;
//   - no background proof (proof_concurrency = 0): E's layer is still
//     unproven when H's container is prepared; another image (H) reaches
//     its chain ID with another blob, so the Prepare waits for the proof
//     and is refused with an error naming the forgery.
//
// Either way the incident is in the log, the metric and snapshotterctl.
func TestForgedLayerBeforeHonestInOneNamespace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]any
	}{
		{"default settings", nil},
		{"proofs on demand only", map[string]any{"layers": map[string]any{"proof_concurrency": 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: tc.config})
			honest, attacker := s.pushForgery(t)

			start := time.Now()
			s.ctrIn(t, "node", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", attacker.ref)
			pulled := time.Now()
			s.ctrIn(t, "node", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
			out, err := s.runInErr(t, "node", honest.ref, "honest-1")
			switch {
			case err == nil && out == "clean\n":
				if tc.config != nil {
					t.Fatal("honest container ran at once, though nothing proved the forged layer before it")
				}
				t.Logf("honest container ran clean at once (the forgery was found and removed before the honest pull)")
			case err == nil:
				t.Fatalf("container of the honest image printed %q: it ran on the attacker's layer", out)
			case strings.Contains(err.Error(), "forged"):
				// Its Prepare waited for the proof (another image, E,
				// reaches the layer with another blob) and was refused.
				for _, want := range []string{attacker.ref, attacker.layer.String(), attacker.diffID.String(), honest.diffID.String()} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the refusal does not name %s: %v", want, err)
					}
				}
				t.Logf("honest container refused: %v", err)
			case tc.config != nil:
				t.Fatalf("honest container failed, but not with the forgery's error: %v", err)
			default:
				// The forged snapshot was removed between H's pull and
				// its run: ctr run finds H not unpacked and fails to
				// unpack it from a content store a lazy pull never
				// filled. No byte of E.
				t.Logf("honest container failed (the forged snapshot was removed after the pull): %v", err)
			}
			s.waitProofs(t, map[string]float64{"forged": 1})
			s.checkIncident(t, attacker, honest.diffID)
			if tc.config == nil {
				s.logDetection(t, attacker, start, pulled)
			}

			// The forged snapshot is removed from containerd once
			// nothing uses it, so that pulling H again unpacks H's real
			// layer.
			s.waitForgedSnapshotGone(t, "node", honest.diffID.String())
			s.ctrIn(t, "node", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
			if out := s.runIn(t, "node", honest.ref, "honest-2"); out != "clean\n" {
				t.Errorf("container of the honest image pulled again printed %q, want \"clean\"", out)
			}
		})
	}
}

// logDetection reports how soon the forgery of attacker was found, from
// the incident's log line, against one full fetch of its blob (not a
// timed assertion: the benchmark measures).
func (s *stack) logDetection(t *testing.T, attacker forgeryImage, start, pulled time.Time) {
	t.Helper()
	lines := s.snapshotterLogLines(t, "forged layer", attacker.layer.String())
	if len(lines) == 0 {
		return
	}
	var at time.Time
	var proof string
	for _, f := range strings.Fields(lines[0]) {
		if v, ok := strings.CutPrefix(f, "time="); ok {
			at, _ = time.Parse(time.RFC3339Nano, strings.Trim(v, `"`))
		}
		if v, ok := strings.CutPrefix(f, "duration="); ok {
			proof = v
		}
	}
	fetchStart := time.Now()
	s.fetchBlob(t, "lazyfs/forgery", attacker.layer)
	t.Logf("forgery found %v after the attacker's pull began (its pull took %v; the proof itself %s); one full fetch of its blob takes %v",
		at.Sub(start).Round(time.Millisecond), pulled.Sub(start).Round(time.Millisecond), proof, time.Since(fetchStart).Round(time.Millisecond))
}

// TestForgedLayerAfterHonestInOneNamespace: H pulled first, then E, in one
// namespace. E changes nothing of what H's containers see: containerd
// skips E's layer (H's chain ID exists), lazyfs proves H's layer (another
// image, E, reaches it with another blob, so H's container waits for the
// proof with "before-share"), and no incident is raised.
func TestForgedLayerAfterHonestInOneNamespace(t *testing.T) {
	s := startStack(t, harness.V2)
	honest, attacker := s.pushForgery(t)

	s.ctrIn(t, "node", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", honest.ref)
	s.ctrIn(t, "node", "image", "pull", "--plain-http", "--snapshotter", "lazyfs", attacker.ref)
	for _, c := range []struct{ ref, id string }{{honest.ref, "honest-check"}, {attacker.ref, "attacker-check"}} {
		if out := s.runIn(t, "node", c.ref, c.id); out != "clean\n" {
			t.Errorf("container of %s printed %q, want \"clean\"", c.ref, out)
		}
	}
	s.waitProofs(t, map[string]float64{"verified": 1, "forged": 0, "error": 0})
	if out := s.ctlOK(t, "mounts", "list"); !strings.Contains(out, string(daemonapi.Verified)) || strings.Contains(out, string(daemonapi.Forged)) {
		t.Errorf("snapshotterctl mounts list does not show the honest layer verified:\n%s", out)
	}
}

// TestForgedLayerControlOverlayfs is the control: containerd's own
// overlayfs snapshotter unpacks every layer and checks its DiffID, so E's
// pull fails on it, and H's container is clean.
func TestForgedLayerControlOverlayfs(t *testing.T) {
	s := startStack(t, harness.V2)
	honest, attacker := s.pushForgery(t)

	_, err := s.ctrd.Ctr(context.Background(), "--namespace", "control", "image", "pull", "--plain-http", "--snapshotter", "overlayfs", attacker.ref)
	if err == nil || !strings.Contains(err.Error(), "diff id") {
		t.Fatalf("overlayfs pull of the forgery: %v, want a failure on the diff id", err)
	}
	t.Logf("overlayfs refused the forgery: %v", firstLine(err.Error()))
	s.ctrIn(t, "control", "image", "pull", "--plain-http", "--snapshotter", "overlayfs", honest.ref)
	base := s.ctrd.BaseDir()
	out := s.ctrIn(t, "control", "run",
		"--runc-root", filepath.Join(base, "runc"),
		"--fifo-dir", filepath.Join(base, "fifo"),
		"--cgroup", "/"+s.ctrd.Namespace()+"/control-check",
		"--snapshotter", "overlayfs", "--rm", honest.ref, "control-check",
		"sh", "-c", "if [ -e "+poisonPath+" ]; then echo poisoned; else echo clean; fi")
	if out != "clean\n" {
		t.Errorf("overlayfs container of the honest image printed %q, want \"clean\"", out)
	}
}

// checkIncident checks that the forgery of attacker (claiming DiffID
// claimed) is reported where an operator looks: the snapshotter's log and
// snapshotterctl status (each naming the image, its layer digest, the
// claimed and the computed DiffID) and the metric.
func (s *stack) checkIncident(t *testing.T, attacker forgeryImage, claimed digest.Digest) {
	t.Helper()
	page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
	if got, ok := metricValue(t, page, "lazyfs_forged_layers_total", nil); !ok || got != 1 {
		t.Errorf("lazyfs_forged_layers_total = %v (present: %v), want 1", got, ok)
	}
	incident := s.snapshotterLogLines(t, "forged layer", attacker.layer.String())
	if len(incident) == 0 {
		t.Errorf("no snapshotter log line reports the forged layer %s", attacker.layer)
	} else {
		t.Logf("incident logged:\n%s", incident[0])
		for _, want := range []string{attacker.ref, attacker.layer.String(), claimed.String(), attacker.diffID.String()} {
			if !strings.Contains(incident[0], want) {
				t.Errorf("the incident %q does not name %s", incident[0], want)
			}
		}
	}
	out := s.ctlOK(t, "status")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "incident:") {
			line = l
		}
	}
	t.Logf("snapshotterctl status: %s", line)
	for _, want := range []string{attacker.ref, attacker.layer.String(), claimed.String(), attacker.diffID.String()} {
		if !strings.Contains(line, want) {
			t.Errorf("snapshotterctl status does not report the incident naming %s:\n%s", want, out)
		}
	}
}

// waitProofs waits until lazyfs_layer_proofs_total has the given value for
// each result named (proofs run in the background).
func (s *stack) waitProofs(t *testing.T, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
		got := map[string]float64{}
		done := true
		for result, w := range want {
			got[result], _ = metricValue(t, page, "lazyfs_layer_proofs_total", map[string]string{"result": result})
			done = done && got[result] == w
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lazyfs_layer_proofs_total = %v after 1m, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForgedSnapshotGone waits until containerd's namespace ns has no
// forged lazyfs snapshot named key (none, or an honest one pulled since).
func (s *stack) waitForgedSnapshotGone(t *testing.T, ns, key string) {
	t.Helper()
	waitFor(t, time.Minute, "forged snapshot "+key+" removed from namespace "+ns, func() (bool, string) {
		out, err := s.ctrd.Ctr(context.Background(), "--namespace", ns, "snapshots", "--snapshotter", "lazyfs", "info", key)
		return err != nil || !strings.Contains(out, "lazyfs.forged"), out
	})
}

// runInErr is runIn for a container that may be refused.
func (s *stack) runInErr(t *testing.T, ns, ref, id string) (string, error) {
	t.Helper()
	base := s.ctrd.BaseDir()
	return s.ctrd.Ctr(context.Background(), "--namespace", ns, "run",
		"--runc-root", filepath.Join(base, "runc"),
		"--fifo-dir", filepath.Join(base, "fifo"),
		"--cgroup", "/"+s.ctrd.Namespace()+"/"+id,
		"--snapshotter", "lazyfs", "--rm", ref, id,
		"sh", "-c", "if [ -e "+poisonPath+" ]; then echo poisoned; else echo clean; fi")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// forgeryImage is one single-layer eStargz image of the forgery test.
type forgeryImage struct {
	ref    string
	layer  digest.Digest // the eStargz blob
	diffID digest.Digest // what the blob decompresses to
}

// pushForgery builds the honest image H (busybox) and the attacker's image
// E (busybox and /POISONED), converts both to eStargz inside containerd,
// rewrites E's config to claim H's DiffID, pushes both and removes every
// local copy, so that the pulls start from nothing.
func (s *stack) pushForgery(t *testing.T) (honest, attacker forgeryImage) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busybox, err := env.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	base := harness.TestImageLayers(busybox)[0]
	poisoned := append(slices.Clone(base), harness.File{Path: poisonPath, Mode: 0o644, Content: []byte("forged bytes\n")})
	layout := t.TempDir()
	repo := s.reg.Addr() + "/lazyfs/forgery"
	var converted [2]images.Image
	for i, v := range []struct {
		tag   string
		layer harness.Layer
	}{{"honest", base}, {"attacker", poisoned}} {
		if _, err := harness.WriteOCILayout(layout, v.tag, []harness.Layer{v.layer}); err != nil {
			t.Fatal(err)
		}
		src := repo + ":" + v.tag + "-gzip"
		if err := harness.Push(ctx, layout, v.tag, src); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ctrd.Ctr(ctx, "image", "pull", "--plain-http", src); err != nil {
			t.Fatal(err)
		}
		if converted[i], err = convert.Image(logtest.WithT(ctx, t), s.cl, src, repo+":"+v.tag, convert.Options{}); err != nil {
			t.Fatal(err)
		}
	}

	cs := s.cl.ContentStore()
	manifests, configs := [2]ocispec.Manifest{}, [2]ocispec.Image{}
	for i, img := range converted {
		if manifests[i], err = images.Manifest(ctx, cs, img.Target, platforms.Default()); err != nil {
			t.Fatal(err)
		}
		raw, err := content.ReadBlob(ctx, cs, manifests[i].Config)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &configs[i]); err != nil {
			t.Fatal(err)
		}
		if len(manifests[i].Layers) != 1 || len(configs[i].RootFS.DiffIDs) != 1 {
			t.Fatalf("converted image %s has %d layers", img.Name, len(manifests[i].Layers))
		}
	}
	honest = forgeryImage{ref: repo + ":honest", layer: manifests[0].Layers[0].Digest, diffID: configs[0].RootFS.DiffIDs[0]}
	attacker = forgeryImage{ref: repo + ":forged", layer: manifests[1].Layers[0].Digest, diffID: configs[1].RootFS.DiffIDs[0]}

	// The forgery: E's config claims H's DiffID; its manifest, layer and
	// TOC digest annotation stay E's own, all self-consistent. Its blobs are
	// written under a lease: containerd's garbage collector may otherwise
	// remove the new config before the manifest that references it exists.
	ctx, done, err := s.cl.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done(context.WithoutCancel(ctx))
	forged := configs[1]
	forged.RootFS.DiffIDs = []digest.Digest{honest.diffID}
	configDesc := writeJSONBlob(ctx, t, cs, manifests[1].Config.MediaType, forged, nil)
	manifest := manifests[1]
	manifest.Config = configDesc
	manifestDesc := writeJSONBlob(ctx, t, cs, manifest.MediaType, manifest, map[string]string{
		"containerd.io/gc.ref.content.config": configDesc.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    attacker.layer.String(),
	})
	if _, err := s.cl.ImageService().Create(ctx, images.Image{Name: attacker.ref, Target: manifestDesc}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{honest.ref, attacker.ref} {
		if _, err := s.ctrd.Ctr(ctx, "image", "push", "--plain-http", ref); err != nil {
			t.Fatal(err)
		}
	}
	rm := []string{"image", "rm", "--sync", honest.ref, attacker.ref, repo + ":attacker", repo + ":honest-gzip", repo + ":attacker-gzip"}
	if _, err := s.ctrd.Ctr(ctx, rm...); err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed honest image %s (layer %s, DiffID %s) and the forgery %s (layer %s, DiffID %s, claiming %s) in %v",
		honest.ref, honest.layer, honest.diffID, attacker.ref, attacker.layer, attacker.diffID, honest.diffID, time.Since(start).Round(time.Millisecond))
	return honest, attacker
}

// writeJSONBlob stores v as a blob of mediaType with the given labels.
func writeJSONBlob(ctx context.Context, t *testing.T, cs content.Store, mediaType string, v any, lbls map[string]string) ocispec.Descriptor {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := content.WriteBlob(ctx, cs, "forgery-"+desc.Digest.Encoded(), bytes.NewReader(raw), desc, content.WithLabels(lbls)); err != nil {
		t.Fatal(err)
	}
	return desc
}

// ctrIn runs ctr in containerd namespace ns (the later --namespace wins
// over the harness's own).
func (s *stack) ctrIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := s.ctrd.Ctr(context.Background(), append([]string{"--namespace", ns}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runIn runs a container of ref in namespace ns that says whether it sees
// the attacker's file. Its cgroup goes below the harness's namespace
// cgroup, which the harness removes at teardown.
func (s *stack) runIn(t *testing.T, ns, ref, id string) string {
	t.Helper()
	base := s.ctrd.BaseDir()
	return s.ctrIn(t, ns, "run",
		"--runc-root", filepath.Join(base, "runc"),
		"--fifo-dir", filepath.Join(base, "fifo"),
		"--cgroup", "/"+s.ctrd.Namespace()+"/"+id,
		"--snapshotter", "lazyfs", "--rm", ref, id,
		"sh", "-c", "if [ -e "+poisonPath+" ]; then echo poisoned; else echo clean; fi")
}

// snapshotterLogLines returns the lines of the snapshotter's own log that
// contain every one of words.
func (s *stack) snapshotterLogLines(t *testing.T, words ...string) []string {
	t.Helper()
	var found []string
	for _, path := range s.snap.Logs() {
		if strings.Contains(path, "daemons") {
			continue // a worker's log
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
				found = append(found, line)
			}
		}
	}
	return found
}

// TestProvenLayerIsFullyCached: the proof of a layer is its background
// fetch (issue 11 point 4): once every layer of an image is proven, a
// container that reads every file of it costs the registry nothing more.
func TestProvenLayerIsFullyCached(t *testing.T) {
	s := startStack(t, harness.V2)
	proxy := startProxy(t, s)
	img := s.convertToEStargz(t, proxy.Addr())
	s.pullLazily(t, img)
	s.waitProofs(t, map[string]float64{"verified": float64(len(img.layers)), "forged": 0, "error": 0})
	proxy.Reset()
	s.runChecksOf(t, img.ref, "after-proof")
	if n := proxy.TotalBlobBytes(); n != 0 {
		t.Errorf("reading every file of a proven image fetched %d blob bytes from the registry, want 0", n)
	}
}

// TestProofsSurviveRestarts: a layer left unproven by one run (background
// proofs off) is proven by the next, and the verdict, kept in the
// snapshot's labels, is not proven again by the run after that.
func TestProofsSurviveRestarts(t *testing.T) {
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, Config: proofsOff})
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	if out := s.ctlOK(t, "mounts", "list"); strings.Count(out, string(daemonapi.Unverified)) != len(img.layers) {
		t.Fatalf("mounts before any proof, want %d unverified:\n%s", len(img.layers), out)
	}
	ctx := context.Background()
	if err := s.snap.RestartWith(ctx, nil); err != nil { // the defaults: background proofs on
		t.Fatal(err)
	}
	s.waitProofs(t, map[string]float64{"verified": float64(len(img.layers)), "forged": 0, "error": 0})
	for _, c := range img.chainIDs {
		out := s.ctrIn(t, "default", "snapshots", "--snapshotter", "lazyfs", "info", c)
		if !strings.Contains(out, "lazyfs.verified") {
			t.Errorf("snapshot %s after its proof has no verified label:\n%s", c, out)
		}
	}
	if err := s.snap.RestartWith(ctx, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "verdicts told to the workers again", func() (bool, string) {
		out := s.ctlOK(t, "mounts", "list")
		return strings.Count(out, " "+string(daemonapi.Verified)+" ") == len(img.layers), out
	})
	page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
	if n, _ := metricValue(t, page, "lazyfs_layer_proofs_total", map[string]string{"result": "verified"}); n != 0 {
		t.Errorf("%v proofs after a restart of proven layers, want 0", n)
	}
}
