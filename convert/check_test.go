package convert_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/platforms"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readBlob reads desc and checks that the store holds exactly what it names.
func readBlob(ctx context.Context, t *testing.T, cs content.Provider, desc ocispec.Descriptor) []byte {
	t.Helper()
	b := readAll(ctx, t, cs, desc)
	if int64(len(b)) != desc.Size || digest.FromBytes(b) != desc.Digest {
		t.Fatalf("blob %s: got %d bytes with digest %s, descriptor says %d", desc.Digest, len(b), digest.FromBytes(b), desc.Size)
	}
	return b
}

func decodeBlob(ctx context.Context, t *testing.T, cs content.Provider, desc ocispec.Descriptor, v any) {
	t.Helper()
	if err := json.Unmarshal(readBlob(ctx, t, cs, desc), v); err != nil {
		t.Fatalf("decode %s %s: %v", desc.MediaType, desc.Digest, err)
	}
}

// wantImage is what a converted image must hold: the files of each layer,
// by platform of the manifest.
type wantImage map[string][][]file

// checkImage checks a converted index or manifest and returns the
// converted manifests by platform.
func checkImage(ctx context.Context, t *testing.T, cs content.Store, root ocispec.Descriptor, want wantImage, withLabels bool) map[string]ocispec.Manifest {
	t.Helper()
	manifests := map[string]ocispec.Descriptor{}
	switch root.MediaType {
	case ocispec.MediaTypeImageIndex:
		var idx ocispec.Index
		decodeBlob(ctx, t, cs, root, &idx)
		if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("index: schemaVersion %d, mediaType %q", idx.SchemaVersion, idx.MediaType)
		}
		for i, m := range idx.Manifests {
			if m.Platform == nil {
				t.Fatalf("index manifest %d has no platform", i)
			}
			manifests[platforms.Format(*m.Platform)] = m
			if withLabels {
				checkLabel(ctx, t, cs, root, fmt.Sprintf("containerd.io/gc.ref.content.m.%d", i), m.Digest)
			}
		}
	case ocispec.MediaTypeImageManifest:
		if len(want) != 1 {
			t.Fatalf("a single manifest cannot hold %d platforms", len(want))
		}
		for p := range want {
			manifests[p] = root
		}
	default:
		t.Fatalf("converted root has media type %q", root.MediaType)
	}
	if got, exp := slices.Sorted(maps.Keys(manifests)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, exp) {
		t.Fatalf("platforms %v, want %v", got, exp)
	}

	out := map[string]ocispec.Manifest{}
	for p, desc := range manifests {
		out[p] = checkManifest(ctx, t, cs, desc, want[p], withLabels)
	}
	return out
}

func checkManifest(ctx context.Context, t *testing.T, cs content.Store, desc ocispec.Descriptor, want [][]file, withLabels bool) ocispec.Manifest {
	t.Helper()
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest descriptor media type %q", desc.MediaType)
	}
	var mf ocispec.Manifest
	decodeBlob(ctx, t, cs, desc, &mf)
	if mf.SchemaVersion != 2 || mf.MediaType != ocispec.MediaTypeImageManifest || mf.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("manifest: schemaVersion %d, mediaType %q, config %q", mf.SchemaVersion, mf.MediaType, mf.Config.MediaType)
	}
	var cfg ocispec.Image
	decodeBlob(ctx, t, cs, mf.Config, &cfg)
	if len(mf.Layers) != len(want) || len(cfg.RootFS.DiffIDs) != len(want) {
		t.Fatalf("manifest has %d layers and %d diff_ids, want %d", len(mf.Layers), len(cfg.RootFS.DiffIDs), len(want))
	}
	for i, l := range mf.Layers {
		diffID := checkLayer(ctx, t, cs, l, want[i], withLabels)
		if cfg.RootFS.DiffIDs[i] != diffID {
			t.Errorf("layer %d: config diff_id %s, layer decompresses to %s", i, cfg.RootFS.DiffIDs[i], diffID)
		}
	}
	if withLabels {
		checkLabel(ctx, t, cs, desc, "containerd.io/gc.ref.content.config", mf.Config.Digest)
		for i, l := range mf.Layers {
			checkLabel(ctx, t, cs, desc, fmt.Sprintf("containerd.io/gc.ref.content.l.%d", i), l.Digest)
		}
	}
	return mf
}

func checkLabel(ctx context.Context, t *testing.T, cs content.Store, desc ocispec.Descriptor, key string, want digest.Digest) {
	t.Helper()
	info, err := cs.Info(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Labels[key]; got != want.String() {
		t.Errorf("blob %s: label %s = %q, want %s", desc.Digest, key, got, want)
	}
}

// checkLayer checks that desc is an eStargz layer holding files, read both
// as a plain tar (what an unpack sees) and through its table of contents
// (what a lazy mount sees), and returns its diffID.
func checkLayer(ctx context.Context, t *testing.T, cs content.Store, desc ocispec.Descriptor, files []file, withLabels bool) digest.Digest {
	t.Helper()
	if desc.MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("layer %s: media type %q", desc.Digest, desc.MediaType)
	}
	blob := readBlob(ctx, t, cs, desc)

	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromBytes(raw)
	if got := desc.Annotations[labels.LabelUncompressed]; got != diffID.String() {
		t.Errorf("layer %s: %s annotation %q, decompressed digest %s", desc.Digest, labels.LabelUncompressed, got, diffID)
	}
	if got := desc.Annotations[estargz.StoreUncompressedSizeAnnotation]; got != strconv.Itoa(len(raw)) {
		t.Errorf("layer %s: uncompressed size annotation %q, decompressed size %d", desc.Digest, got, len(raw))
	}
	if withLabels {
		checkLabel(ctx, t, cs, desc, labels.LabelUncompressed, diffID)
	}
	checkTar(t, raw, files)

	tocDigest, err := digest.Parse(desc.Annotations[estargz.TOCJSONDigestAnnotation])
	if err != nil {
		t.Fatalf("layer %s: TOC digest annotation: %v", desc.Digest, err)
	}
	if got := digest.FromBytes(tocJSON(t, blob)); got != tocDigest {
		t.Errorf("layer %s: TOC JSON digest %s, annotation %s", desc.Digest, got, tocDigest)
	}
	checkLazyRead(t, blob, tocDigest, files)
	return diffID
}

// checkTar compares the tar stream of a decompressed eStargz layer with the
// files the source layer held.
func checkTar(t *testing.T, raw []byte, files []file) {
	t.Helper()
	want := map[string]file{}
	for _, f := range files {
		want[f.hdr.Name] = f
	}
	got := map[string]file{}
	var landmark bool
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Name {
		case estargz.PrefetchLandmark, estargz.NoPrefetchLandmark:
			landmark = true
			continue
		case estargz.TOCTarName:
			continue
		}
		got[hdr.Name] = file{hdr: *hdr, body: body}
	}
	if !landmark {
		t.Error("layer has no prefetch landmark")
	}
	if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
		t.Fatalf("layer holds %v, want %v", g, w)
	}
	for name, w := range want {
		g := got[name]
		gh, wh := g.hdr, w.hdr
		if gh.Typeflag != wh.Typeflag || gh.Mode != wh.Mode || gh.Uid != wh.Uid || gh.Gid != wh.Gid ||
			gh.Size != wh.Size || gh.Linkname != wh.Linkname || gh.Devmajor != wh.Devmajor ||
			gh.Devminor != wh.Devminor || !gh.ModTime.Equal(wh.ModTime) {
			t.Errorf("%s: header %+v, want %+v", name, gh, wh)
		}
		if !maps.Equal(xattrs(gh), xattrs(wh)) {
			t.Errorf("%s: xattrs %v, want %v", name, xattrs(gh), xattrs(wh))
		}
		if !bytes.Equal(g.body, w.body) {
			t.Errorf("%s: content differs (%d bytes, want %d)", name, len(g.body), len(w.body))
		}
	}
}

func xattrs(h tar.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			out[name] = v
		}
	}
	return out
}

// tocJSON extracts the TOC JSON of an eStargz blob without estargz's
// reader: the footer names the offset of a gzip stream holding a tar with
// the one file stargz.index.json.
func tocJSON(t *testing.T, blob []byte) []byte {
	t.Helper()
	tocOffset, _, err := estargz.OpenFooter(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob[tocOffset:]))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != estargz.TOCTarName {
		t.Fatalf("TOC tar: first entry %v, error %v", hdr, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseTOC(t *testing.T, blob []byte) estargz.JTOC {
	t.Helper()
	var toc estargz.JTOC
	if err := json.Unmarshal(tocJSON(t, blob), &toc); err != nil {
		t.Fatal(err)
	}
	return toc
}

// checkLazyRead reads every regular file through the TOC, chunk by chunk,
// as a lazy mount does.
func checkLazyRead(t *testing.T, blob []byte, tocDigest digest.Digest, files []file) {
	t.Helper()
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.VerifyTOC(tocDigest); err != nil {
		t.Fatalf("verify TOC: %v", err)
	}
	bodies := map[string][]byte{}
	for _, f := range files {
		switch f.hdr.Typeflag {
		case tar.TypeReg:
			bodies[f.hdr.Name] = f.body
		case tar.TypeLink:
			bodies[f.hdr.Name] = bodies[f.hdr.Linkname]
		}
	}
	for name, want := range bodies {
		sr, err := r.OpenFile(name)
		if err != nil {
			t.Errorf("open %s through TOC: %v", name, err)
			continue
		}
		got, err := io.ReadAll(sr)
		if err != nil {
			t.Errorf("read %s through TOC: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s through TOC: content differs (%d bytes, want %d)", name, len(got), len(want))
		}
	}
}

// tocNames lists the files of a TOC in blob order, once each.
func tocNames(toc estargz.JTOC) []string {
	var names []string
	for _, e := range toc.Entries {
		if e.Type != "chunk" {
			names = append(names, e.Name)
		}
	}
	return names
}
