package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Converting the 300,000-entry layer takes minutes here (estargz.Build
// allocates a new gzip writer for every file), so converted images are kept
// as OCI layouts between invocations of the benchmark. A key covers all
// that decides the result: the source manifest, the conversion options,
// the estargz module and the sources of package convert; anything else
// changed converts again.

// estargzModule is the module whose version goes into the cache key.
const estargzModule = "github.com/containerd/stargz-snapshotter/estargz"

// conversionCache is a directory of converted images, one OCI layout per
// key, holding the image under lazyTag. The zero value (no dir) caches
// nothing.
type conversionCache struct {
	dir string
}

// key identifies the conversion of the manifest src with compression level
// level by the code in repoRoot/convert.
func (c conversionCache) key(repoRoot string, src digest.Digest, level int) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "source %s\ncompression level %d\n", src, level)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == estargzModule {
				fmt.Fprintf(h, "%s %s %s\n", d.Path, d.Version, d.Sum)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "convert", "*.go"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("failed to list the sources of package convert under %s: %v", repoRoot, err)
	}
	slices.Sort(files)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("failed to read %s: %w", f, err)
		}
		fmt.Fprintf(h, "file %s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// lookup returns the layout of key, or "" when it is not cached.
func (c conversionCache) lookup(key string) string {
	if c.dir == "" {
		return ""
	}
	dir := filepath.Join(c.dir, key)
	if _, err := os.Stat(filepath.Join(dir, ocispec.ImageIndexFile)); err != nil {
		return ""
	}
	return dir
}

// forget removes the layout of key, e.g. after it failed to push.
func (c conversionCache) forget(key string) error {
	if c.dir == "" {
		return nil
	}
	return os.RemoveAll(filepath.Join(c.dir, key))
}

// store writes the image name (a manifest) from containerd's content store
// as the layout of key. It writes a temporary directory and renames it, so
// an interrupted store leaves no layout that lookup would return.
func (c conversionCache) store(ctx context.Context, cl *client.Client, name, key string) (err error) {
	if c.dir == "" {
		return nil
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("failed to create conversion cache %s: %w", c.dir, err)
	}
	tmp, err := os.MkdirTemp(c.dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("failed to create conversion cache entry: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	img, err := cl.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("failed to get image %s: %w", name, err)
	}
	if err := exportLayout(ctx, cl.ContentStore(), img.Target(), tmp, lazyTag); err != nil {
		return fmt.Errorf("failed to export %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, key)); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrExist) {
			// Another invocation stored the same conversion first.
			os.RemoveAll(tmp)
			return nil
		}
		return fmt.Errorf("failed to store conversion: %w", err)
	}
	return nil
}

// exportLayout writes the manifest target, its config and layers as an OCI
// layout in dir, with target tagged tag in index.json.
func exportLayout(ctx context.Context, cs content.Provider, target ocispec.Descriptor, dir, tag string) error {
	if target.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("image is a %s, not an OCI manifest", target.MediaType)
	}
	blobs := filepath.Join(dir, ocispec.ImageBlobsDir, string(digest.SHA256))
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	raw, err := content.ReadBlob(ctx, cs, target)
	if err != nil {
		return fmt.Errorf("failed to read manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("failed to decode manifest: %w", err)
	}
	for _, d := range append([]ocispec.Descriptor{target, m.Config}, m.Layers...) {
		if err := copyBlob(ctx, cs, d, filepath.Join(blobs, d.Digest.Encoded())); err != nil {
			return err
		}
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return err
	}
	tagged := target
	tagged.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{tagged},
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ocispec.ImageIndexFile), index, 0o644)
}

// copyBlob copies one blob out of the content store and checks its digest.
func copyBlob(ctx context.Context, cs content.Provider, d ocispec.Descriptor, dst string) error {
	ra, err := cs.ReaderAt(ctx, d)
	if err != nil {
		return fmt.Errorf("failed to open blob %s: %w", d.Digest, err)
	}
	defer ra.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Digest.Verifier()
	if _, err := io.Copy(io.MultiWriter(f, v), content.NewReader(ra)); err != nil {
		return fmt.Errorf("failed to copy blob %s: %w", d.Digest, err)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s does not match its digest", d.Digest)
	}
	return f.Close()
}
