package convert_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
)

func countBlobs(ctx context.Context, t *testing.T, cs content.Store) int {
	t.Helper()
	n := 0
	if err := cs.Walk(ctx, func(content.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLayerConvertFuncLeavesAlone(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	tarball := tarBytes(t, baseFiles())
	gz := compress(t, tarball, compression.Gzip)
	annotated := writeBlob(ctx, t, cs, ocispec.MediaTypeImageLayerGzip, gz, nil)
	annotated.Annotations = map[string]string{estargz.TOCJSONDigestAnnotation: digest.FromString("toc").String()}

	cases := []struct {
		name      string
		desc      ocispec.Descriptor
		wantEvent bool
	}{
		{"config", writeBlob(ctx, t, cs, ocispec.MediaTypeImageConfig, []byte("{}"), nil), false},
		{"manifest", writeBlob(ctx, t, cs, ocispec.MediaTypeImageManifest, []byte("{}"), nil), false},
		{"annotated layer", annotated, true},
		{"docker foreign layer", writeBlob(ctx, t, cs, images.MediaTypeDockerSchema2LayerForeignGzip, gz, nil), true},
		{"oci non-distributable layer", writeBlob(ctx, t, cs, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", gz, nil), true},
		{"encrypted layer", writeBlob(ctx, t, cs, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", gz, nil), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := countBlobs(ctx, t, cs)
			var ev events
			got, err := convert.LayerConvertFunc(convert.Options{Progress: ev.add})(ctx, cs, tc.desc)
			if err != nil || got != nil {
				t.Fatalf("got %v, %v; want nil, nil", got, err)
			}
			if after := countBlobs(ctx, t, cs); after != before {
				t.Errorf("store went from %d to %d blobs", before, after)
			}
			evs := ev.of(tc.desc.Digest)
			if !tc.wantEvent && len(evs) != 0 {
				t.Errorf("events %+v for a descriptor that is no layer", evs)
			}
			if tc.wantEvent && (len(evs) != 1 || !evs[0].Done || evs[0].Converted != nil || evs[0].Err != nil) {
				t.Errorf("events %+v, want one done without conversion", evs)
			}
		})
	}
}

func TestLayerConvertFuncInvalidOptions(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	cases := []struct {
		name string
		opts convert.Options
	}{
		{"negative chunk size", convert.Options{ChunkSize: -1}},
		{"compression level above best", convert.Options{CompressionLevel: gzip.BestCompression + 1}},
		{"compression level below huffman only", convert.Options{CompressionLevel: gzip.HuffmanOnly - 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert.LayerConvertFunc(tc.opts)(ctx, cs, l.desc)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("got %v, want invalid argument", err)
			}
		})
	}
}

func TestLayerConvertFuncErrors(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	gz := compress(t, tarBytes(t, baseFiles()), compression.Gzip)
	corrupt := append(bytes.Clone(gz[:20]), bytes.Repeat([]byte{0xff}, 4096)...)
	cases := []struct {
		name string
		desc ocispec.Descriptor
		is   func(error) bool
	}{
		{"corrupt gzip", writeBlob(ctx, t, cs, ocispec.MediaTypeImageLayerGzip, corrupt, nil), nil},
		{"not a tar", writeBlob(ctx, t, cs, ocispec.MediaTypeImageLayer, bytes.Repeat([]byte("lazyfs"), 200), nil), nil},
		{"missing blob", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("gone"), Size: 4}, errdefs.IsNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ev events
			_, err := convert.LayerConvertFunc(convert.Options{Progress: ev.add})(ctx, cs, tc.desc)
			if err == nil {
				t.Fatal("conversion succeeded")
			}
			if !strings.Contains(err.Error(), tc.desc.Digest.String()) {
				t.Errorf("error %q does not name the layer", err)
			}
			if tc.is != nil && !tc.is(err) {
				t.Errorf("error %v has the wrong class", err)
			}
			evs := ev.of(tc.desc.Digest)
			if len(evs) != 2 || !evs[1].Done || !errors.Is(err, evs[1].Err) {
				t.Errorf("events %+v, want start then done with the error", evs)
			}
		})
	}
}

// A gzip layer that already is eStargz but has no annotations (a Docker
// manifest cannot carry them) keeps its blob and gains the annotations.
func TestLayerConvertFuncAnnotatesEStargz(t *testing.T) {
	ctx, cs, _ := openMetadata(t)
	files := baseFiles()
	raw := tarBytes(t, files)
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))), estargz.WithChunkSize(32<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	b, err := io.ReadAll(blob)
	if err != nil {
		t.Fatal(err)
	}
	src := writeBlob(ctx, t, cs, images.MediaTypeDockerSchema2LayerGzip, b, nil)

	got, err := convert.LayerConvertFunc(convert.Options{})(ctx, cs, src)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Digest != src.Digest || got.Size != src.Size {
		t.Fatalf("got %+v, want the blob %s kept", got, src.Digest)
	}
	if a := got.Annotations[estargz.TOCJSONDigestAnnotation]; a != blob.TOCDigest().String() {
		t.Errorf("TOC digest annotation %q, built %s", a, blob.TOCDigest())
	}
	if a := got.Annotations[labels.LabelUncompressed]; a != blob.DiffID().String() {
		t.Errorf("diffID annotation %q, built %s", a, blob.DiffID())
	}
	checkLayer(ctx, t, cs, *got, files, false)
}

func TestLayerConvertFuncDefaults(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	got, err := convert.LayerConvertFunc(convert.Options{})(ctx, cs, l.desc)
	if err != nil {
		t.Fatal(err)
	}
	checkLayer(ctx, t, cs, *got, l.files, false)
	toc := parseTOC(t, readAll(ctx, t, cs, *got))
	if names := tocNames(toc); names[0] != estargz.NoPrefetchLandmark {
		t.Errorf("TOC starts with %q, want %s without prioritized files", names[0], estargz.NoPrefetchLandmark)
	}
	if n := countEntries(toc, "usr/bin/big"); n != 1 {
		t.Errorf("usr/bin/big (300 KiB) has %d TOC entries, want 1 with the 4 MiB default chunk", n)
	}
}

// The converter remembers what it converted; a blob collected since must
// be built again, not named.
func TestLayerConvertFuncRebuildsDeletedBlob(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, appFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	fn := convert.LayerConvertFunc(convert.Options{CompressionLevel: gzip.BestSpeed})
	first, err := fn(ctx, cs, l.desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Delete(ctx, first.Digest); err != nil {
		t.Fatal(err)
	}
	second, err := fn(ctx, cs, l.desc)
	if err != nil {
		t.Fatal(err)
	}
	checkLayer(ctx, t, cs, *second, l.files, false)
}

// An ingest left behind by an interrupted conversion must not end up in
// the new blob.
func TestLayerConvertFuncDiscardsStaleIngest(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, appFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	w, err := content.OpenWriter(ctx, cs, content.WithRef("lazyfs-convert-"+l.desc.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("stale"), 1000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	got, err := convert.LayerConvertFunc(convert.Options{})(ctx, cs, l.desc)
	if err != nil {
		t.Fatal(err)
	}
	checkLayer(ctx, t, cs, *got, l.files, false)
}

// failingStore is a content store whose writers fail after a few bytes,
// like a full disk.
type failingStore struct {
	content.Store
}

func (s failingStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := s.Store.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &failingWriter{Writer: w, left: 1000}, nil
}

type failingWriter struct {
	content.Writer
	left int
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errDiskFull
	}
	w.left -= len(p)
	return w.Writer.Write(p)
}

// A failed write must not leave the build's goroutine behind.
func TestLayerConvertFuncFailedWrite(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	_, err := convert.LayerConvertFunc(convert.Options{ChunkSize: 16 << 10})(ctx, failingStore{cs}, l.desc)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("got %v, want the write error", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "estargz.Build.func") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("build goroutine still running:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLayerConvertFuncRebuildsEStargz: with Rebuild, an eStargz layer
// (here annotated already) is built again with the prioritized files
// first, in the order given, then the prefetch landmark; without it the
// layer is left as it is (TestLayerConvertFuncLeavesAlone).
func TestLayerConvertFuncRebuildsEStargz(t *testing.T) {
	ctx, cs, _ := openMetadata(t)
	files := baseFiles()
	raw := tarBytes(t, files)
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))))
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	b, err := io.ReadAll(blob)
	if err != nil {
		t.Fatal(err)
	}
	src := writeBlob(ctx, t, cs, ocispec.MediaTypeImageLayerGzip, b, nil)
	src.Annotations = map[string]string{estargz.TOCJSONDigestAnnotation: blob.TOCDigest().String()}

	order := []string{"usr/bin/big", "etc/hostname"}
	got, err := convert.LayerConvertFunc(convert.Options{Rebuild: true, PrioritizedFiles: order})(ctx, cs, src)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Digest == src.Digest {
		t.Fatalf("got %+v, want a rebuilt layer", got)
	}
	checkLayer(ctx, t, cs, *got, files, false)
	var regs []string
	for _, name := range tocNames(parseTOC(t, readAll(ctx, t, cs, *got))) {
		switch name {
		case "usr/bin/big", "etc/hostname", estargz.PrefetchLandmark:
			regs = append(regs, name)
		}
	}
	if want := append(order, estargz.PrefetchLandmark); !slices.Equal(regs, want) {
		t.Errorf("TOC order %q, want %q", regs, want)
	}
}

// TestLayerConvertFuncCompressionLevel guards buildOptions' level: zero
// means estargz's default, gzip.BestCompression (not gzip's own
// NoCompression), and any other level is used as given.
func TestLayerConvertFuncCompressionLevel(t *testing.T) {
	ctx, cs, _ := openLocal(t)
	l := writeLayer(ctx, t, cs, baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	size := func(level int) int64 {
		t.Helper()
		got, err := convert.LayerConvertFunc(convert.Options{CompressionLevel: level, Rebuild: true})(ctx, cs, l.desc)
		if err != nil {
			t.Fatal(err)
		}
		return got.Size
	}
	def, best, huffman := size(0), size(gzip.BestCompression), size(gzip.HuffmanOnly)
	if def != best {
		t.Errorf("default level gives %d bytes, gzip.BestCompression %d: want the same", def, best)
	}
	if huffman <= best {
		t.Errorf("gzip.HuffmanOnly gives %d bytes, not more than gzip.BestCompression's %d: the level was not used", huffman, best)
	}
}
