package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/opencontainers/image-spec/identity"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// stack is one private set of processes a test runs against: a registry
// holding the standard test image, a snapshotter, and containerd with the
// lazyfs proxy plugin.
type stack struct {
	reg  *harness.Registry
	snap *harness.Snapshotter
	ctrd *harness.Containerd
	cl   *client.Client
	// ref is the test image in reg.
	ref string
	// checksummed is the number of files TestImageChecksumsPath lists.
	checksummed int
}

// startStack builds and pushes the test image and starts the processes; all
// are torn down when t ends, with their logs printed if it failed.
func startStack(t testing.TB, version harness.ContainerdVersion) *stack {
	t.Helper()
	return startStackWith(t, version, harness.SnapshotterOptions{Env: env})
}

// startStackWith is startStack with the snapshotter started from snapOpts.
func startStackWith(t testing.TB, version harness.ContainerdVersion, snapOpts harness.SnapshotterOptions) *stack {
	t.Helper()
	ctx := context.Background()
	busybox, err := env.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	layers := harness.TestImageLayers(busybox)
	layout := t.TempDir()
	if _, err := harness.WriteOCILayout(layout, "v1", layers); err != nil {
		t.Fatal(err)
	}

	s := &stack{checksummed: countChecksums(layers)}
	// Tracked in dependency order: cleanups run in reverse, so containerd
	// stops first (killing its tasks), then the snapshotter, then the registry.
	if s.reg, err = harness.StartRegistry(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	harness.Track(t, s.reg)
	s.ref = s.reg.Addr() + "/lazyfs/test:v1"
	if err := harness.Push(ctx, layout, "v1", s.ref); err != nil {
		t.Fatal(err)
	}
	if s.snap, err = harness.StartSnapshotter(ctx, snapOpts); err != nil {
		t.Fatal(err)
	}
	harness.Track(t, s.snap)
	s.ctrd, err = harness.StartContainerd(ctx, harness.ContainerdOptions{
		Version:       version,
		Env:           env,
		LazyfsAddress: s.snap.Address(),
		LazyfsRoot:    s.snap.Root(),
	})
	if err != nil {
		t.Fatal(err)
	}
	harness.Track(t, s.ctrd)
	if err := s.snap.UseContainerd(s.ctrd.Address()); err != nil {
		t.Fatal(err)
	}
	if s.cl, err = s.ctrd.Client(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// countChecksums returns the number of lines of the image's checksum list.
func countChecksums(layers []harness.Layer) int {
	for _, l := range layers {
		for _, f := range l {
			if "/"+strings.TrimPrefix(f.Path, "/") == harness.TestImageChecksumsPath {
				return bytes.Count(f.Content, []byte("\n"))
			}
		}
	}
	return 0
}

// pull pulls the test image into snapshotter. containerd 2.x's ctr pulls
// through the transfer service, which sends the remote-snapshot labels by
// itself (with the harness's unpack_config); containerd 1.6's ctr sends none,
// so lazyfs pulls on 1.6 go through the Go client with
// AppendInfoHandlerWrapper, as `snapshotterctl image pull` does.
func (s *stack) pull(t *testing.T, snapshotter string) {
	t.Helper()
	s.pullRef(t, s.ref, snapshotter)
}

// pullRef is pull for any image reference (an eStargz copy of the test
// image, or one behind a test proxy).
func (s *stack) pullRef(t testing.TB, ref, snapshotter string) {
	t.Helper()
	ctx := context.Background()
	if s.ctrd.Version() == harness.V1 && snapshotter == "lazyfs" {
		resolver := docker.NewResolver(docker.ResolverOptions{
			Hosts: config.ConfigureHosts(ctx, config.HostOptions{DefaultScheme: "http"}),
		})
		_, err := s.cl.Pull(ctx, ref,
			client.WithResolver(resolver),
			client.WithPullUnpack,
			client.WithPullSnapshotter(snapshotter),
			client.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)),
		)
		if err != nil {
			t.Fatalf("pull %s with %s: %v", ref, snapshotter, err)
		}
		return
	}
	if _, err := s.ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", snapshotter, ref); err != nil {
		t.Fatal(err)
	}
}

// runChecks runs a container from the lazyfs snapshot that verifies every
// file of the image against the checksum list and prints a file, and
// asserts on its output.
func (s *stack) runChecks(t *testing.T, id string) {
	t.Helper()
	s.runChecksOf(t, s.ref, id)
}

// runChecksOf is runChecks for any image reference holding the test image
// (its eStargz copy has the same files).
func (s *stack) runChecksOf(t testing.TB, ref, id string) {
	t.Helper()
	// Failures are printed after the summary line so that the output names
	// the files that did not match.
	script := "sha256sum -c " + harness.TestImageChecksumsPath + " >/tmp/sums 2>&1; " +
		`echo "exit=$? ok=$(grep -c ': OK$' /tmp/sums)"; grep -v ': OK$' /tmp/sums; cat /data/links/relative`
	out, err := s.ctrd.CtrRun(context.Background(), "--snapshotter", "lazyfs", "--rm", ref, id, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	want := "exit=0 ok=" + strconv.Itoa(s.checksummed) + "\nlink target\n"
	if out != want {
		t.Errorf("container %s printed:\n%s\nwant:\n%s", id, out, want)
	}
}

// compareWithOverlayfs mounts the image's rootfs from overlayfs and from
// lazyfs and asserts that they are identical, and checks a few facts of the
// test image directly, since an identical but wrong pair would pass.
func (s *stack) compareWithOverlayfs(t *testing.T) {
	t.Helper()
	s.compareRootfs(t, s.ref, s.ref)
}

// compareRootfs is compareWithOverlayfs for two references of the test
// image: overlayRef as unpacked by overlayfs (the reference) and lazyRef as
// lazyfs serves it (the original, or its eStargz copy).
func (s *stack) compareRootfs(t *testing.T, overlayRef, lazyRef string) {
	t.Helper()
	ctx := context.Background()
	dirs := map[string]string{}
	for _, v := range []struct{ sn, ref string }{{"overlayfs", overlayRef}, {"lazyfs", lazyRef}} {
		sn, ref := v.sn, v.ref
		dir := filepath.Join(t.TempDir(), sn)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cleanup, err := harness.MountImageRootfs(ctx, s.cl, ref, sn, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := cleanup(); err != nil {
				t.Errorf("unmount %s view: %v", sn, err)
			}
		})
		dirs[sn] = dir
	}
	diffs, err := harness.CompareTrees(dirs["overlayfs"], dirs["lazyfs"])
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("lazyfs rootfs differs from overlayfs in %d places:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}

	lazy := dirs["lazyfs"]
	for _, tc := range []struct {
		path   string
		exists bool
	}{
		{harness.TestImageDeleted, false},
		{"/data/changes/deleted-dir", false},
		{harness.TestImageOpaqueDir + "/old-a", false},
		{harness.TestImageOpaqueDir + "/old-sub", false},
		{harness.TestImageOpaqueDir + "/new-file", true},
		{"/data/changes/kept", true},
		{harness.TestImageChecksumsPath, true},
	} {
		_, err := os.Lstat(filepath.Join(lazy, tc.path))
		if exists := err == nil; exists != tc.exists {
			t.Errorf("%s in the lazyfs rootfs: exists=%v (%v), want %v", tc.path, exists, err, tc.exists)
		}
	}
	if b, err := os.ReadFile(filepath.Join(lazy, harness.TestImageOverwrite)); err != nil || bytes.Contains(b, []byte("version 1")) {
		t.Errorf("%s shows the lower layer's version or cannot be read: %v", harness.TestImageOverwrite, err)
	}
}

// chainID returns the chain ID of the test image's rootfs.
func (s *stack) chainID(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	img, err := s.cl.GetImage(ctx, s.ref)
	if err != nil {
		t.Fatal(err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return identity.ChainID(diffIDs).String()
}

// snapshotLines lists the lazyfs snapshots as `ctr snapshots ls` shows them
// (key, parent, kind), sorted, header left out.
func (s *stack) snapshotLines(t *testing.T) []string {
	t.Helper()
	out, err := s.ctrd.Ctr(context.Background(), "snapshots", "--snapshotter", "lazyfs", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 0 && strings.HasPrefix(lines[0], "KEY") {
		lines = lines[1:]
	}
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	slices.Sort(lines)
	return lines
}
