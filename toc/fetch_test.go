package toc_test

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

func testCtx(t *testing.T) context.Context {
	return logtest.WithT(context.Background(), t)
}

// cleanNames returns the set of cleaned non-chunk names of a TOC.
func cleanNames(jtoc *estargz.JTOC) []string {
	var names []string
	for _, e := range jtoc.Entries {
		if e.Type != "chunk" {
			names = append(names, path.Clean(e.Name))
		}
	}
	slices.Sort(names)
	return names
}

func TestFetchAcceptsRealLayers(t *testing.T) {
	withRoot := append([]tarEntry{dir("./")}, baseEntries()...)
	chain := append(baseEntries(), hardlink("etc/passwd.2", "etc/passwd.bak"), hardlink("etc/passwd.3", "etc/passwd.2"))
	many := make([]tarEntry, 0, 200)
	for i := range 200 {
		many = append(many, reg("f/"+string(rune('a'+i%26))+string(rune('a'+i/26)), bigBody(i*37)))
	}
	cases := []struct {
		name    string
		entries []tarEntry
		opts    []estargz.Option
		legacy  bool
	}{
		{name: "every entry type", entries: baseEntries(), opts: []estargz.Option{estargz.WithChunkSize(testChunkSize)}},
		{name: "default chunk size", entries: baseEntries()},
		{name: "root directory entry", entries: withRoot},
		{name: "hard link chain", entries: chain},
		{name: "prioritized files with landmark", entries: baseEntries(), opts: []estargz.Option{estargz.WithPrioritizedFiles([]string{"bin/big", "etc/passwd"})}},
		{name: "no prefetch landmark", entries: baseEntries(), opts: []estargz.Option{estargz.WithPrioritizedFiles([]string{})}},
		{name: "shared streams (min chunk size)", entries: many, opts: []estargz.Option{estargz.WithMinChunkSize(8 << 10), estargz.WithChunkSize(4 << 10)}},
		{name: "parallel build", entries: many, opts: []estargz.Option{estargz.WithParallelism(4)}},
		{name: "empty layer", entries: nil},
		// Zeros compress close to deflate's 1032:1 limit, which bounds
		// chunk sizes by their compressed streams.
		{name: "highly compressible chunks", entries: []tarEntry{reg("zeros", strings.Repeat("\x00", 9<<20)), reg("after", "x")}},
		{name: "highly compressible, fastest level", entries: []tarEntry{reg("zeros", strings.Repeat("\x00", 9<<20))}, opts: []estargz.Option{estargz.WithCompressionLevel(gzip.BestSpeed)}},
		{name: "highly compressible, one chunk", entries: []tarEntry{reg("zeros", strings.Repeat("\x00", 1<<20))}, opts: []estargz.Option{estargz.WithChunkSize(8 << 20)}},
		{name: "legacy 47-byte footer", entries: baseEntries(), opts: []estargz.Option{estargz.WithChunkSize(testChunkSize)}, legacy: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			blob, tocDigest := buildBlob(t, tc.entries, tc.opts...)
			body, want := splitBlob(t, blob)
			if tc.legacy {
				blob = slices.Concat(blob[:len(blob)-estargz.FooterSize], legacyFooter(int64(len(body))))
			}
			src := newSource(blob)
			l, err := toc.Fetch(testCtx(t), src, blobDigest(blob), tocDigest, toc.DefaultLimits())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if l.BlobDigest != blobDigest(blob) || l.BlobSize != int64(len(blob)) || l.TOCDigest != tocDigest || l.TOCOffset != int64(len(body)) {
				t.Errorf("layer = {%s %d %s %d}, want {%s %d %s %d}", l.BlobDigest, l.BlobSize, l.TOCDigest, l.TOCOffset,
					blobDigest(blob), len(blob), tocDigest, len(body))
			}
			if got := digest.FromBytes(tocJSON(t, l)); got != tocDigest {
				t.Errorf("digest of the JSON in TOCCompressed = %s, want %s", got, tocDigest)
			}
			if !slices.Equal(cleanNames(l.TOC), cleanNames(want)) {
				t.Errorf("names = %q, want %q", cleanNames(l.TOC), cleanNames(want))
			}
			if len(l.TOC.Entries) != len(want.Entries) {
				t.Errorf("%d entries, want %d", len(l.TOC.Entries), len(want.Entries))
			}
			requests, n := src.stats()
			if requests != 2 {
				t.Errorf("%d range requests, want 2 (footer, TOC)", requests)
			}
			footerSize := int64(estargz.FooterSize)
			if tc.legacy {
				footerSize = 47
			}
			if wantBytes := estargz.FooterSize + int64(len(blob)) - int64(len(body)) - footerSize; n != wantBytes {
				t.Errorf("fetched %d bytes, want %d (footer + compressed TOC)", n, wantBytes)
			}
		})
	}
}

func TestFetchKeepsRawNames(t *testing.T) {
	// estargz.Open would turn "./etc/passwd" into "etc/passwd"; consumers
	// get the names as the layer wrote them.
	blob, tocDigest := buildBlob(t, []tarEntry{dir("./etc/"), reg("./etc/passwd", "x")})
	l, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.TOC.Entries {
		names = append(names, e.Name)
	}
	if !slices.Contains(names, "./etc/passwd") {
		t.Errorf("names = %q, want the raw ./etc/passwd", names)
	}
}

func TestFetchSourceErrorsAreNotRefusals(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	errRegistry := errors.New("registry said 503")
	cases := []struct {
		name string
		src  *fakeSource
		want error
	}{
		{name: "footer request fails", src: &fakeSource{blob: blob, failOn: 1, err: errRegistry}, want: errRegistry},
		{name: "TOC request fails", src: &fakeSource{blob: blob, failOn: 2, err: errRegistry}, want: errRegistry},
		{name: "short read", src: &fakeSource{blob: blob, short: true}, want: io.ErrUnexpectedEOF},
		{name: "unavailable", src: &fakeSource{blob: blob, failOn: 2, err: errdefs.ErrUnavailable}, want: errdefs.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := toc.Fetch(testCtx(t), tc.src, blobDigest(blob), tocDigest, toc.DefaultLimits())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch error = %v, want %v", err, tc.want)
			}
			var re *toc.RefusedError
			if errors.As(err, &re) || errdefs.IsInvalidArgument(err) {
				t.Fatalf("source error %v reported as a refusal", err)
			}
		})
	}
}

func TestFetchStopsOnCancel(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	_, err := toc.Fetch(ctx, newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch error = %v, want context.Canceled", err)
	}
	if errdefs.IsInvalidArgument(err) {
		t.Fatalf("cancellation reported as a refusal: %v", err)
	}
}

func TestFetchRejectsBadLimits(t *testing.T) {
	blob, tocDigest := baseBlob(t)
	src := newSource(blob)
	_, err := toc.Fetch(testCtx(t), src, blobDigest(blob), tocDigest, toc.Limits{MaxSize: 1, MaxEntries: 1})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Fetch error = %v, want invalid argument", err)
	}
	var re *toc.RefusedError
	if errors.As(err, &re) {
		t.Fatalf("bad limits reported as a refused layer: %v", err)
	}
	if requests, _ := src.stats(); requests != 0 {
		t.Errorf("%d requests with invalid limits, want 0", requests)
	}
}
