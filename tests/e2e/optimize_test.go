package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/lazyfs/lazyfs/internal/testreq"
)

// prioritizedFiles returns the regular files of an eStargz blob that come
// before its prefetch landmark, in blob order (nil without a landmark).
func prioritizedFiles(t *testing.T, blob []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob)) // the blob's gzip streams read as one
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var files []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == estargz.PrefetchLandmark:
			return files
		case h.Typeflag == tar.TypeReg:
			files = append(files, name)
		}
	}
}

// TestImageOptimize: snapshotterctl image optimize runs the eStargz test
// image once through lazyfs with a command that reads three files of the
// data layer in a known order, and converts it: the data layer of the
// result starts with exactly those files, in that order, then the
// prefetch landmark.
func TestImageOptimize(t *testing.T) {
	if err := env.CheckBinaries("snapshotterctl"); err != nil {
		testreq.Require(t, err)
	}
	s := startStack(t, 0)
	img := s.convertToEStargz(t, "")
	dst := s.reg.Addr() + "/" + estargzRepo + ":optimized"
	read := []string{"data/size/4k", "data/mode/readonly", "data/size/one-byte"}

	stdout, stderr, code := runCmd(t, env.Bin("snapshotterctl"), "image", "optimize",
		"--address", s.ctrd.Address(), "--run-dir", s.snap.RunDir(), "--config", s.snap.ConfigPath(),
		"--push", "--run-for", "30s",
		img.ref, dst, "--", "/bin/sh", "-c", "cat /"+strings.Join(read, " /")+" > /dev/null")
	t.Logf("snapshotterctl image optimize:\n%s%s", stdout, stderr)
	if code != 0 {
		t.Fatalf("image optimize: exit %d", code)
	}

	ctx := context.Background()
	optimized, err := s.cl.GetImage(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	m, err := images.Manifest(ctx, s.cl.ContentStore(), optimized.Target(), platforms.Default())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, l := range m.Layers {
		blob := s.fetchBlob(t, estargzRepo, l.Digest)
		first := prioritizedFiles(t, blob)
		t.Logf("layer %d %s: prioritized %q", i+1, l.Digest, first)
		if slices.ContainsFunc(first, func(f string) bool { return strings.HasPrefix(f, "data/") }) {
			found = true
			if !slices.Equal(first, read) {
				t.Errorf("data layer's prioritized files %q, want the run's reads in order %q", first, read)
			}
		}
	}
	if !found {
		t.Errorf("no layer of %s prioritizes the files the run read", dst)
	}
}
