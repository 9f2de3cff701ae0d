package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sampleLayers has one entry of every kind WriteOCILayout supports.
func sampleLayers() []Layer {
	return []Layer{
		{
			{Path: "/dir", Mode: os.ModeDir | 0o755},
			{Path: "/dir/file", Mode: 0o640, Uid: 1000, Gid: 1001, Content: []byte("hello\n")},
			{Path: "/dir/setuid", Mode: 0o755 | os.ModeSetuid, Content: []byte("x")},
			{Path: "dir/sticky", Mode: os.ModeDir | os.ModeSticky | 0o777},
			{Path: "/dir/link", Mode: os.ModeSymlink | 0o777, Linkname: "file"},
			{Path: "/dir/hard", Hardlink: true, Linkname: "/dir/file"},
			{Path: "/dir/hard2", Mode: 0o777, Uid: 5, Hardlink: true, Linkname: "/dir/hard"},
			{Path: "/dir/fifo", Mode: os.ModeNamedPipe | 0o600},
			{Path: "/dir/null", Mode: os.ModeDevice | os.ModeCharDevice | 0o666, Devmajor: 1, Devminor: 3},
			{Path: "/dir/loop", Mode: os.ModeDevice | 0o660, Devmajor: 7, Devminor: 1},
			{Path: "/dir/xattr", Mode: 0o644, Xattrs: map[string]string{"user.a": "1", "user.b": "two"}},
			{Path: "/dir/old", Mode: 0o644, ModTime: time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)},
		},
		{
			{Path: "/dir/.wh.file", Mode: 0o644},
			{Path: "/dir/new", Mode: 0o600, Content: bytes.Repeat([]byte("z"), 100_000)},
		},
	}
}

// readBackImage is an image read from a layout through its index.
type readBackImage struct {
	desc     ocispec.Descriptor
	manifest ocispec.Manifest
	config   ocispec.Image
	layers   [][]*tar.Header
	contents []map[string][]byte
}

// readLayoutImage follows index → manifest → config → layers, checking every
// blob against its descriptor.
func readLayoutImage(t *testing.T, dir, tag string) readBackImage {
	t.Helper()
	var layout ocispec.ImageLayout
	readLayoutJSON(t, filepath.Join(dir, ocispec.ImageLayoutFile), &layout)
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout version %q", layout.Version)
	}
	var index ocispec.Index
	readLayoutJSON(t, filepath.Join(dir, ocispec.ImageIndexFile), &index)
	var img readBackImage
	found := 0
	for _, m := range index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			img.desc = m
			found++
		}
	}
	if found != 1 {
		t.Fatalf("index.json has %d manifests tagged %q: %+v", found, tag, index.Manifests)
	}
	if img.desc.Platform == nil || img.desc.Platform.OS != "linux" || img.desc.Platform.Architecture != "amd64" {
		t.Errorf("index platform %+v, want linux/amd64", img.desc.Platform)
	}
	if err := json.Unmarshal(readLayoutBlob(t, dir, img.desc), &img.manifest); err != nil {
		t.Fatal(err)
	}
	if img.manifest.SchemaVersion != 2 || img.manifest.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest schema %d media type %q", img.manifest.SchemaVersion, img.manifest.MediaType)
	}
	if img.manifest.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("config media type %q", img.manifest.Config.MediaType)
	}
	if err := json.Unmarshal(readLayoutBlob(t, dir, img.manifest.Config), &img.config); err != nil {
		t.Fatal(err)
	}
	if img.config.OS != "linux" || img.config.Architecture != "amd64" || img.config.RootFS.Type != "layers" {
		t.Errorf("config platform %s/%s rootfs %q", img.config.OS, img.config.Architecture, img.config.RootFS.Type)
	}
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		t.Fatalf("%d diff_ids for %d layers", len(img.config.RootFS.DiffIDs), len(img.manifest.Layers))
	}
	for i, l := range img.manifest.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d media type %q", i, l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(readLayoutBlob(t, dir, l)))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if zr.Name != "" || !zr.ModTime.IsZero() {
			t.Errorf("layer %d: gzip header has name %q mtime %v", i, zr.Name, zr.ModTime)
		}
		uncompressed, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if got := digest.FromBytes(uncompressed); got != img.config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id %s, uncompressed tar is %s", i, img.config.RootFS.DiffIDs[i], got)
		}
		hdrs, contents := readTarEntries(t, uncompressed)
		img.layers = append(img.layers, hdrs)
		img.contents = append(img.contents, contents)
	}
	return img
}

func readLayoutJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readLayoutBlob(t *testing.T, dir string, desc ocispec.Descriptor) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(data); got != desc.Digest || int64(len(data)) != desc.Size {
		t.Fatalf("blob %s (%d bytes) holds %s (%d bytes)", desc.Digest, desc.Size, got, len(data))
	}
	return data
}

func readTarEntries(t *testing.T, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var hdrs []*tar.Header
	contents := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, contents
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
		contents[hdr.Name] = body
	}
}

func TestWriteOCILayoutReadBack(t *testing.T) {
	dir := t.TempDir()
	layers := sampleLayers()
	desc, err := WriteOCILayout(dir, "v1", layers)
	if err != nil {
		t.Fatal(err)
	}
	img := readLayoutImage(t, dir, "v1")
	if img.desc.Digest != desc.Digest || img.desc.Size != desc.Size || desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("returned %+v, index has %+v", desc, img.desc)
	}
	if len(img.layers) != len(layers) {
		t.Fatalf("%d layers, want %d", len(img.layers), len(layers))
	}
	for i, l := range layers {
		if len(img.layers[i]) != len(l) {
			t.Fatalf("layer %d: %d entries, want %d", i, len(img.layers[i]), len(l))
		}
		for j, f := range l {
			if f.Hardlink {
				// The header carries the target's attributes.
				target := *findEntry(l, path.Clean("/"+f.Linkname))
				for target.Hardlink {
					target = *findEntry(l, path.Clean("/"+target.Linkname))
				}
				target.Path, target.Hardlink, target.Linkname, target.Content = f.Path, true, f.Linkname, nil
				f = target
			}
			checkTarEntry(t, f, img.layers[i][j], img.contents[i][img.layers[i][j].Name])
		}
	}
}

// checkTarEntry compares what a File asked for with what the tar holds.
func checkTarEntry(t *testing.T, f File, hdr *tar.Header, content []byte) {
	t.Helper()
	wantName := imageEntryName(f.Path, f.Mode.IsDir())
	if hdr.Name != wantName {
		t.Errorf("entry %q named %q, want %q", f.Path, hdr.Name, wantName)
		return
	}
	wantType := map[os.FileMode]byte{
		0: tar.TypeReg, os.ModeDir: tar.TypeDir, os.ModeSymlink: tar.TypeSymlink,
		os.ModeNamedPipe: tar.TypeFifo, os.ModeDevice | os.ModeCharDevice: tar.TypeChar,
		os.ModeDevice: tar.TypeBlock,
	}[f.Mode.Type()]
	if f.Hardlink {
		wantType = tar.TypeLink
	}
	if hdr.Typeflag != wantType {
		t.Errorf("%s: type %q, want %q", hdr.Name, hdr.Typeflag, wantType)
	}
	wantMode := f.Mode
	if f.Hardlink {
		wantMode = f.Mode.Perm() | f.Mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
	}
	if got := hdr.FileInfo().Mode(); got != wantMode {
		t.Errorf("%s: mode %v, want %v", hdr.Name, got, wantMode)
	}
	if hdr.Uid != f.Uid || hdr.Gid != f.Gid || hdr.Uname != "" || hdr.Gname != "" {
		t.Errorf("%s: owner %d(%q):%d(%q), want numeric %d:%d", hdr.Name, hdr.Uid, hdr.Uname, hdr.Gid, hdr.Gname, f.Uid, f.Gid)
	}
	wantTime := f.ModTime.Truncate(time.Second)
	if f.ModTime.IsZero() {
		wantTime = DefaultModTime
	}
	if !hdr.ModTime.Equal(wantTime) {
		t.Errorf("%s: mtime %v, want %v", hdr.Name, hdr.ModTime, wantTime)
	}
	wantLink := f.Linkname
	if f.Hardlink {
		wantLink = imageEntryName(f.Linkname, false)
	}
	if hdr.Linkname != wantLink {
		t.Errorf("%s: link %q, want %q", hdr.Name, hdr.Linkname, wantLink)
	}
	if hdr.Devmajor != f.Devmajor || hdr.Devminor != f.Devminor {
		t.Errorf("%s: device %d:%d, want %d:%d", hdr.Name, hdr.Devmajor, hdr.Devminor, f.Devmajor, f.Devminor)
	}
	if !bytes.Equal(content, f.Content) {
		t.Errorf("%s: %d bytes of content, want %d", hdr.Name, len(content), len(f.Content))
	}
	gotXattrs := map[string]string{}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			gotXattrs[name] = v
		}
	}
	if len(f.Xattrs) > 0 || len(gotXattrs) > 0 {
		if !maps.Equal(gotXattrs, f.Xattrs) {
			t.Errorf("%s: xattrs %v, want %v", hdr.Name, gotXattrs, f.Xattrs)
		}
	}
}

func TestWriteOCILayoutReproducible(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	var descs []ocispec.Descriptor
	for _, dir := range dirs {
		desc, err := WriteOCILayout(dir, "repro", sampleLayers())
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, desc)
	}
	if descs[0].Digest != descs[1].Digest {
		t.Fatalf("two runs gave manifests %s and %s", descs[0].Digest, descs[1].Digest)
	}
	a, b := readLayoutImage(t, dirs[0], "repro"), readLayoutImage(t, dirs[1], "repro")
	if !slices.Equal(a.config.RootFS.DiffIDs, b.config.RootFS.DiffIDs) {
		t.Errorf("diff_ids differ: %v and %v", a.config.RootFS.DiffIDs, b.config.RootFS.DiffIDs)
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
		if err != nil {
			t.Fatal(err)
		}
		// 2 layers, config, manifest; no temporary files left.
		if len(entries) != 4 {
			t.Errorf("%s has %d blobs, want 4", dir, len(entries))
		}
	}
}

func TestWriteOCILayoutTags(t *testing.T) {
	dir := t.TempDir()
	one := []Layer{{{Path: "/one", Mode: 0o644, Content: []byte("1")}}}
	two := []Layer{{{Path: "/two", Mode: 0o644, Content: []byte("2")}}}
	first, err := WriteOCILayout(dir, "a", one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteOCILayout(dir, "b", two); err != nil {
		t.Fatal(err)
	}
	// Rewriting a tag replaces its entry instead of adding a second one.
	again, err := WriteOCILayout(dir, "a", two)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest == first.Digest {
		t.Fatal("different layers gave the same manifest")
	}
	var index ocispec.Index
	readLayoutJSON(t, filepath.Join(dir, ocispec.ImageIndexFile), &index)
	if len(index.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2: %+v", len(index.Manifests), index.Manifests)
	}
	if got := readLayoutImage(t, dir, "a").desc.Digest; got != again.Digest {
		t.Errorf("tag a is %s, want %s", got, again.Digest)
	}
}

func TestWriteOCILayoutRejectsBadEntries(t *testing.T) {
	for _, tc := range []struct {
		name string
		file File
	}{
		{"root entry", File{Path: "/", Mode: os.ModeDir | 0o755}},
		{"socket", File{Path: "/sock", Mode: os.ModeSocket | 0o755}},
		{"content on a dir", File{Path: "/d", Mode: os.ModeDir | 0o755, Content: []byte("x")}},
		{"hard link without target", File{Path: "/h", Hardlink: true}},
		{"hard link to a missing file", File{Path: "/h", Hardlink: true, Linkname: "/missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := WriteOCILayout(t.TempDir(), "bad", []Layer{{tc.file}}); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v, want an invalid argument", err)
			}
		})
	}
	if _, err := WriteOCILayout(t.TempDir(), "", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty tag: %v", err)
	}
}
