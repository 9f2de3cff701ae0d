package convert_test

import (
	"compress/gzip"
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/platforms"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lazyfs/lazyfs/convert"
)

// events records the progress a conversion reports.
type events struct {
	mu  sync.Mutex
	all []convert.Event
}

func (e *events) add(ev convert.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// of returns the events of one source layer.
func (e *events) of(d digest.Digest) []convert.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []convert.Event
	for _, ev := range e.all {
		if ev.Digest == d {
			out = append(out, ev)
		}
	}
	return out
}

func hostPlatform() ocispec.Platform {
	return platforms.Normalize(platforms.DefaultSpec())
}

// otherPlatform is a platform the host does not run.
func otherPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if hostPlatform().Architecture == p.Architecture {
		p.Architecture = "ppc64le"
	}
	return p
}

func testOptions(ev *events) convert.Options {
	return convert.Options{
		ChunkSize:        64 << 10,
		PrioritizedFiles: []string{prioritized},
		CompressionLevel: gzip.BestSpeed,
		Progress:         ev.add,
	}
}

// fixture is a source image: its root descriptor, its layers and what the
// converted image must hold.
type fixture struct {
	root   ocispec.Descriptor
	layers []layer
	want   wantImage
}

type layerSpec struct {
	files     []file
	comp      compression.Compression
	mediaType string
}

// writeFixture writes an image of the given layers for the host platform;
// with index, under an index that also holds a manifest for another
// platform, which the default Platform drops.
func writeFixture(ctx context.Context, t *testing.T, cs content.Store, docker, index bool, specs []layerSpec) fixture {
	t.Helper()
	var f fixture
	var files [][]file
	for _, s := range specs {
		f.layers = append(f.layers, writeLayer(ctx, t, cs, s.files, s.comp, s.mediaType))
		files = append(files, s.files)
	}
	host := hostPlatform()
	f.root = writeManifest(ctx, t, cs, docker, host, f.layers)
	f.want = wantImage{platforms.Format(host): files}
	if index {
		gzType := ocispec.MediaTypeImageLayerGzip
		if docker {
			gzType = images.MediaTypeDockerSchema2LayerGzip
		}
		other := writeManifest(ctx, t, cs, docker, otherPlatform(), []layer{
			writeLayer(ctx, t, cs, []file{reg("other", []byte("s390x"))}, compression.Gzip, gzType),
		})
		f.root = writeIndex(ctx, t, cs, docker, f.root, other)
	}
	return f
}

func TestIndexConvertFunc(t *testing.T) {
	emptyLayer := []file(nil)
	cases := []struct {
		name   string
		docker bool
		index  bool
		layers []layerSpec
	}{
		{
			name:  "oci index",
			index: true,
			layers: []layerSpec{
				{baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip},
				{appFiles(), compression.Uncompressed, ocispec.MediaTypeImageLayer},
				{emptyLayer, compression.Gzip, ocispec.MediaTypeImageLayerGzip},
			},
		},
		{
			name:   "docker manifest list",
			docker: true,
			index:  true,
			layers: []layerSpec{
				{baseFiles(), compression.Zstd, images.MediaTypeDockerSchema2LayerZstd},
				{appFiles(), compression.Gzip, images.MediaTypeDockerSchema2LayerGzip},
				{emptyLayer, compression.Uncompressed, images.MediaTypeDockerSchema2Layer},
			},
		},
		{
			name: "oci manifest",
			layers: []layerSpec{
				{baseFiles(), compression.Zstd, ocispec.MediaTypeImageLayerZstd},
				{appFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip},
			},
		},
	}
	for _, st := range stores {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				ctx, cs, _ := st.open(t)
				fx := writeFixture(ctx, t, cs, tc.docker, tc.index, tc.layers)
				var ev events

				root, err := convert.IndexConvertFunc(testOptions(&ev))(ctx, cs, fx.root)
				if err != nil {
					t.Fatalf("convert: %v", err)
				}
				if root == nil {
					t.Fatal("convert changed nothing")
				}
				mfs := checkImage(ctx, t, cs, *root, fx.want, st.labels)
				mf := mfs[platforms.Format(hostPlatform())]

				for i, src := range fx.layers {
					checkEvents(t, ev.of(src.desc.Digest), mf.Layers[i].Digest)
					toc := parseTOC(t, readAll(ctx, t, cs, mf.Layers[i]))
					checkPrefetchOrder(t, tocNames(toc), slices.ContainsFunc(src.files, func(f file) bool {
						return "/"+f.hdr.Name == prioritized
					}))
					if slices.ContainsFunc(src.files, func(f file) bool { return f.hdr.Name == "usr/bin/big" }) {
						// 300 KiB in 64 KiB chunks.
						if n := countEntries(toc, "usr/bin/big"); n != 5 {
							t.Errorf("usr/bin/big has %d TOC entries, want 5 chunks", n)
						}
					}
				}

				t.Run("again", func(t *testing.T) {
					var again events
					got, err := convert.IndexConvertFunc(testOptions(&again))(ctx, cs, *root)
					if err != nil {
						t.Fatal(err)
					}
					if got != nil {
						t.Errorf("converting a converted image gave %s, want no change", got.Digest)
					}
					for _, l := range mf.Layers {
						if evs := again.of(l.Digest); len(evs) != 1 || !evs[0].Done || evs[0].Converted != nil {
							t.Errorf("layer %s: events %+v, want one done without conversion", l.Digest, evs)
						}
					}
				})
			})
		}
	}
}

// checkEvents checks that a source layer reported its start and its
// conversion to the layer named converted, once each.
func checkEvents(t *testing.T, evs []convert.Event, converted digest.Digest) {
	t.Helper()
	if len(evs) != 2 || evs[0].Done || !evs[1].Done || evs[1].Err != nil ||
		evs[1].Converted == nil || evs[1].Converted.Digest != converted {
		t.Errorf("events %+v, want start then done with %s", evs, converted)
	}
}

// checkPrefetchOrder checks where the prefetch landmark is: after the
// prioritized file and its parents in the layer that holds it, first in
// the others.
func checkPrefetchOrder(t *testing.T, names []string, holdsPrioritized bool) {
	t.Helper()
	i := slices.Index(names, estargz.PrefetchLandmark)
	if i < 0 {
		t.Fatalf("no %s in TOC %v", estargz.PrefetchLandmark, names)
	}
	var want []string
	if holdsPrioritized {
		want = []string{"opt/", "opt/app/", "opt/app/start.sh"}
	}
	if !slices.Equal(names[:i], want) {
		t.Errorf("TOC entries before the landmark %v, want %v", names[:i], want)
	}
}

func countEntries(toc estargz.JTOC, name string) int {
	n := 0
	for _, e := range toc.Entries {
		if e.Name == name {
			n++
		}
	}
	return n
}

// A layer shared by two manifests must become one eStargz layer: the
// converter maps diffIDs image-wide, so two rebuilds would leave a config
// naming the other's layer.
func TestIndexConvertFuncSharedLayer(t *testing.T) {
	ctx, cs, _ := openMetadata(t)
	base := writeLayer(ctx, t, cs, baseFiles(), compression.Gzip, ocispec.MediaTypeImageLayerGzip)
	want := wantImage{}
	var manifests []ocispec.Descriptor
	for _, p := range []ocispec.Platform{hostPlatform(), otherPlatform()} {
		top := []file{reg("arch", []byte(p.Architecture))}
		manifests = append(manifests, writeManifest(ctx, t, cs, false, p, []layer{
			base, writeLayer(ctx, t, cs, top, compression.Gzip, ocispec.MediaTypeImageLayerGzip),
		}))
		want[platforms.Format(p)] = [][]file{baseFiles(), top}
	}
	root := writeIndex(ctx, t, cs, false, manifests...)

	var ev events
	opts := testOptions(&ev)
	opts.Platform = platforms.All
	got, err := convert.IndexConvertFunc(opts)(ctx, cs, root)
	if err != nil {
		t.Fatal(err)
	}
	mfs := checkImage(ctx, t, cs, *got, want, true)
	host := mfs[platforms.Format(hostPlatform())].Layers[0].Digest
	other := mfs[platforms.Format(otherPlatform())].Layers[0].Digest
	if host != other {
		t.Errorf("shared layer became %s and %s", host, other)
	}
	checkEvents(t, ev.of(base.desc.Digest), host)
}
