package convert_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/log/logtest"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// file is one entry of a test layer; body is the content of a regular file.
type file struct {
	hdr  tar.Header
	body []byte
}

var epoch = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func dir(name string) file {
	return file{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}}
}

func reg(name string, body []byte) file {
	return file{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body: body}
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// baseFiles is a layer with every kind of entry a layer holds.
func baseFiles() []file {
	hostname := reg("etc/hostname", []byte("lazyfs\n"))
	hostname.hdr.Uid, hostname.hdr.Gid = 1000, 1001
	hostname.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.comment": "hello"}
	big := reg("usr/bin/big", randomBytes(1, 300<<10))
	big.hdr.Mode = 0o4755
	return []file{
		dir("etc/"),
		hostname,
		dir("usr/"),
		dir("usr/bin/"),
		big,
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/big-link", Linkname: "usr/bin/big", ModTime: epoch}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin", Linkname: "usr/bin", Mode: 0o777, ModTime: epoch}},
		reg("empty", nil),
		dir("dev/"),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600, ModTime: epoch}},
		dir("var/"),
		reg("var/.wh.gone", nil),
	}
}

// appFiles is an upper layer holding the prioritized file.
func appFiles() []file {
	start := reg("opt/app/start.sh", []byte("#!/bin/sh\nexec /opt/app/data\n"))
	start.hdr.Mode = 0o755
	return []file{
		dir("opt/"),
		reg("opt/.wh..wh..opq", nil),
		dir("opt/app/"),
		reg("opt/app/data", randomBytes(2, 70<<10)),
		start,
		reg("etc/hostname", []byte("upper\n")),
	}
}

const prioritized = "/opt/app/start.sh"

func tarBytes(t *testing.T, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := f.hdr
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %s: %v", hdr.Name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatalf("tar body %s: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t *testing.T, raw []byte, c compression.Compression) []byte {
	t.Helper()
	if c == compression.Uncompressed {
		return raw
	}
	var buf bytes.Buffer
	w, err := compression.CompressStream(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer is a source layer written to a store, with what it must convert to.
type layer struct {
	desc  ocispec.Descriptor
	files []file
}

func writeBlob(ctx context.Context, t *testing.T, cs content.Store, mediaType string, b []byte, labels map[string]string) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := content.WriteBlob(ctx, cs, "test-"+desc.Digest.String(), bytes.NewReader(b), desc, content.WithLabels(labels)); err != nil {
		t.Fatalf("write %s: %v", mediaType, err)
	}
	return desc
}

func writeJSON(ctx context.Context, t *testing.T, cs content.Store, mediaType string, v any, labels map[string]string) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return writeBlob(ctx, t, cs, mediaType, b, labels)
}

func writeLayer(ctx context.Context, t *testing.T, cs content.Store, files []file, c compression.Compression, mediaType string) layer {
	t.Helper()
	return layer{desc: writeBlob(ctx, t, cs, mediaType, compress(t, tarBytes(t, files), c), nil), files: files}
}

// writeManifest writes a config and a manifest over layers, labelled for
// containerd's garbage collector as a pull would.
func writeManifest(ctx context.Context, t *testing.T, cs content.Store, docker bool, p ocispec.Platform, layers []layer) ocispec.Descriptor {
	t.Helper()
	cfg := ocispec.Image{
		Platform: p,
		Config:   ocispec.ImageConfig{Cmd: []string{"/opt/app/start.sh"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	var descs []ocispec.Descriptor
	labels := map[string]string{}
	for i, l := range layers {
		rc, err := compression.DecompressStream(bytes.NewReader(readAll(ctx, t, cs, l.desc)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(raw))
		descs = append(descs, l.desc)
		labels[fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i)] = l.desc.Digest.String()
	}
	cfgType, mfType := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	if docker {
		cfgType, mfType = images.MediaTypeDockerSchema2Config, images.MediaTypeDockerSchema2Manifest
	}
	cfgDesc := writeJSON(ctx, t, cs, cfgType, cfg, nil)
	labels["containerd.io/gc.ref.content.config"] = cfgDesc.Digest.String()
	mf := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mfType,
		Config:    cfgDesc,
		Layers:    descs,
	}
	desc := writeJSON(ctx, t, cs, mfType, mf, labels)
	desc.Platform = &p
	return desc
}

func writeIndex(ctx context.Context, t *testing.T, cs content.Store, docker bool, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	mediaType := ocispec.MediaTypeImageIndex
	if docker {
		mediaType = images.MediaTypeDockerSchema2ManifestList
	}
	labels := map[string]string{}
	for i, m := range manifests {
		labels[fmt.Sprintf("containerd.io/gc.ref.content.m.%d", i)] = m.Digest.String()
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaType, Manifests: manifests}
	return writeJSON(ctx, t, cs, mediaType, idx, labels)
}

func readAll(ctx context.Context, t *testing.T, cs content.Provider, desc ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.ReadBlob(ctx, cs, desc)
	if err != nil {
		t.Fatalf("read %s: %v", desc.Digest, err)
	}
	return b
}

// store is a content store the tests run against.
type store struct {
	name string
	// labels says whether the store keeps labels (containerd's does; a
	// bare local store does not).
	labels bool
	open   func(t *testing.T) (context.Context, content.Store, *metadata.DB)
}

var stores = []store{
	{name: "local", open: openLocal},
	{name: "metadata", labels: true, open: openMetadata},
}

func testContext(t *testing.T) context.Context {
	return logtest.WithT(context.Background(), t)
}

func openLocal(t *testing.T) (context.Context, content.Store, *metadata.DB) {
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return testContext(t), cs, nil
}

// openMetadata returns containerd's own content store: labels in bbolt,
// namespaces, garbage collection. ctx holds a lease, as during a pull.
func openMetadata(t *testing.T) (context.Context, content.Store, *metadata.DB) {
	root := t.TempDir()
	cs, err := local.NewStore(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(filepath.Join(root, "meta.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bdb.Close() })
	db := metadata.NewDB(bdb, cs, nil)
	ctx := namespaces.WithNamespace(testContext(t), "test")
	if err := db.Init(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := metadata.NewLeaseManager(db).Create(ctx, leases.WithID("fixture"))
	if err != nil {
		t.Fatal(err)
	}
	return leases.WithLease(ctx, l.ID), db.ContentStore(), db
}
