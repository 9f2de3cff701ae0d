package harness

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImagePlatform is the only platform the test images are built for.
var testImagePlatform = ocispec.Platform{Architecture: "amd64", OS: "linux"}

// WriteOCILayout writes an OCI image layout into dir (created if needed):
// oci-layout, blobs/sha256/..., and index.json with the manifest under tag
// as its org.opencontainers.image.ref.name. A manifest already in dir under
// another tag is kept; one under the same tag is replaced. The image is
// linux/amd64 with one gzip tar layer per element of layers.
//
// The output is reproducible: the same layers give the same digests on every
// run (entries in the order given, numeric owners, fixed mtimes, gzip
// headers without name or mtime, no creation dates in the config).
// It returns the manifest's descriptor as listed in index.json.
func WriteOCILayout(dir, tag string, layers []Layer) (ocispec.Descriptor, error) {
	return WriteOCILayoutWithCmd(dir, tag, layers, []string{"/bin/sh"})
}

// WriteOCILayoutWithCmd is WriteOCILayout with the image's Cmd, e.g. a
// pod sandbox ("pause") image that must keep running.
func WriteOCILayoutWithCmd(dir, tag string, layers []Layer, cmd []string) (ocispec.Descriptor, error) {
	if tag == "" {
		return ocispec.Descriptor{}, fmt.Errorf("oci layout %s: empty tag: %w", dir, errdefs.ErrInvalidArgument)
	}
	blobs := filepath.Join(dir, ocispec.ImageBlobsDir, string(digest.SHA256))
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to create oci layout %s: %w", dir, err)
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
	}
	var diffIDs []digest.Digest
	for i, l := range layers {
		desc, diffID, err := writeLayoutLayer(blobs, l)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %d of %s: %w", i+1, tag, err)
		}
		manifest.Layers = append(manifest.Layers, desc)
		diffIDs = append(diffIDs, diffID)
	}
	config := ocispec.Image{
		Platform: testImagePlatform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: cmd,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	var err error
	manifest.Config, err = writeLayoutJSON(blobs, ocispec.MediaTypeImageConfig, config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := writeLayoutJSON(blobs, ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	platform := testImagePlatform
	desc.Platform = &platform
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	if err := writeLayoutIndex(dir, desc); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// writeLayoutLayer stores l as a gzip tar blob and returns its descriptor and
// its diff ID (the digest of the uncompressed tar).
func writeLayoutLayer(blobs string, l Layer) (ocispec.Descriptor, digest.Digest, error) {
	diffID := sha256.New()
	desc, err := writeLayoutBlob(blobs, ocispec.MediaTypeImageLayerGzip, func(w io.Writer) error {
		// A zero gzip.Header has no name and mtime 0: nothing run-specific.
		gz := gzip.NewWriter(w)
		if err := writeLayerTar(io.MultiWriter(gz, diffID), l); err != nil {
			return err
		}
		return gz.Close()
	})
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return desc, digest.NewDigest(digest.SHA256, diffID), nil
}

// writeLayoutJSON stores v, JSON-encoded, as a blob.
func writeLayoutJSON(blobs, mediaType string, v any) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to encode %s: %w", mediaType, err)
	}
	return writeLayoutBlob(blobs, mediaType, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeLayoutBlob streams what fill writes into blobs/<hex of its sha256>,
// through a temporary file so that a failed write leaves no blob behind.
func writeLayoutBlob(blobs, mediaType string, fill func(io.Writer) error) (_ ocispec.Descriptor, err error) {
	tmp, err := os.CreateTemp(blobs, ".tmp-")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to create blob: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	cw := &layoutByteCounter{w: io.MultiWriter(tmp, h)}
	if err := fill(cw); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to write %s blob: %w", mediaType, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to write %s blob: %w", mediaType, err)
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to write %s blob: %w", mediaType, err)
	}
	dgst := digest.NewDigest(digest.SHA256, h)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, dgst.Encoded())); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("failed to store blob %s: %w", dgst, err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: dgst, Size: cw.n}, nil
}

// writeLayoutIndex writes oci-layout and adds desc to index.json, replacing
// an entry with the same ref name.
func writeLayoutIndex(dir string, desc ocispec.Descriptor) error {
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("failed to encode oci-layout: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return fmt.Errorf("failed to write oci-layout: %w", err)
	}
	indexPath := filepath.Join(dir, ocispec.ImageIndexFile)
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
	}
	data, err := os.ReadFile(indexPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("failed to read %s: %w", indexPath, err)
	default:
		if err := json.Unmarshal(data, &index); err != nil {
			return fmt.Errorf("failed to decode %s: %w", indexPath, err)
		}
	}
	tag := desc.Annotations[ocispec.AnnotationRefName]
	kept := index.Manifests[:0]
	for _, m := range index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, m)
		}
	}
	index.Manifests = append(kept, desc)
	if data, err = json.Marshal(index); err != nil {
		return fmt.Errorf("failed to encode %s: %w", indexPath, err)
	}
	if err := os.WriteFile(indexPath, data, 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", indexPath, err)
	}
	return nil
}

// layoutByteCounter counts the bytes written through it.
type layoutByteCounter struct {
	w io.Writer
	n int64
}

func (c *layoutByteCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
