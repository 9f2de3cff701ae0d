package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
)

// The tests in this file guard what adopt accepts as an eStargz blob a lazy
// mount can verify, and the bounds of Options.

// estargzBlob builds an eStargz blob of one file of n bytes.
func estargzBlob(t *testing.T, n int) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := bytes.Repeat([]byte("lazy"), n/4)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	rc, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tb.Bytes()), 0, int64(tb.Len())))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withTOC replaces the TOC of an eStargz blob by the JSON of toc.
func withTOC(t *testing.T, blob []byte, toc *estargz.JTOC) []byte {
	t.Helper()
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	tocOffset, _, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&buf, tocOffset, toc, nil); err != nil {
		t.Fatal(err)
	}
	return slices.Concat(blob[:tocOffset], buf.Bytes())
}

func parsedTOC(t *testing.T, blob []byte) *estargz.JTOC {
	t.Helper()
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	toc, _, err := new(estargz.GzipDecompressor).ParseTOC(bytes.NewReader(blob[tocOffset : int64(len(blob))-footerSize]))
	if err != nil {
		t.Fatal(err)
	}
	return toc
}

func TestReadTOCDigest(t *testing.T) {
	blob := estargzBlob(t, 8000)
	sr := func(b []byte) *io.SectionReader { return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))) }
	d, err := readTOCDigest(sr(blob))
	if err != nil {
		t.Fatal(err)
	}
	if d.Validate() != nil {
		t.Fatalf("TOC digest %q", d)
	}
	// The digest is the TOC JSON's, as the annotation must be.
	if want := digest.FromBytes(mustTOCJSON(t, blob)); d != want {
		t.Errorf("readTOCDigest = %s, want %s, the digest of the TOC JSON", d, want)
	}

	noChunkDigest := parsedTOC(t, blob)
	for _, e := range noChunkDigest.Entries {
		if e.Type == "reg" && e.Size > 0 {
			e.ChunkDigest = ""
		}
	}
	emptyFile := &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{{Name: "e", Type: "reg", Mode: 0o644}}}
	// why is what the refusal must say (it is logged as the reason the
	// layer is rebuilt): a later step would refuse some of these too, but
	// under a name that hides the cause.
	for _, tc := range []struct {
		name string
		blob []byte
		ok   bool
		why  string
	}{
		{"empty file without chunk digest", withTOC(t, blob, emptyFile), true, ""},
		{"file without chunk digest", withTOC(t, blob, noChunkDigest), false, "has no chunk digest"},
		{"blob smaller than a footer", blob[len(blob)-estargz.FooterSize+1:], false, "smaller than a footer"},
		{"only a footer", blob[len(blob)-estargz.FooterSize:], false, "outside blob"},
		{"TOC at offset 0 (an empty layer)", tocOnly(t), true, ""},
		{"TOC offset at the footer (no TOC)", slices.Concat(blob[:len(blob)-estargz.FooterSize], footerAt(t, int64(len(blob)-estargz.FooterSize))), false, "outside blob"},
		{"TOC offset past the footer", slices.Concat(blob[:len(blob)-estargz.FooterSize], footerAt(t, int64(len(blob)))), false, "outside blob"},
		{"plain gzip", gzipBytes(t, []byte("not estargz")), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readTOCDigest(sr(tc.blob))
			if (err == nil) != tc.ok {
				t.Fatalf("readTOCDigest = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.why) {
				t.Errorf("readTOCDigest = %v, want it to say %q", err, tc.why)
			}
		})
	}
}

func mustTOCJSON(t *testing.T, blob []byte) []byte {
	t.Helper()
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	tocOffset, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := new(estargz.GzipDecompressor).DecompressTOC(bytes.NewReader(blob[tocOffset : int64(len(blob))-footerSize]))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tocOnly is an eStargz blob of an empty layer: an empty TOC at offset 0,
// then the footer.
func tocOnly(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&buf, 0, &estargz.JTOC{Version: 1}, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func footerAt(t *testing.T, tocOffset int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&buf, tocOffset, &estargz.JTOC{Version: 1}, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[buf.Len()-estargz.FooterSize:]
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestOptionsBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"chunk size 1", Options{ChunkSize: 1}, true},
		{"negative chunk size", Options{ChunkSize: -1}, false},
		{"Huffman only", Options{CompressionLevel: gzip.HuffmanOnly}, true},
		{"below Huffman only", Options{CompressionLevel: gzip.HuffmanOnly - 1}, false},
		{"best compression", Options{CompressionLevel: gzip.BestCompression}, true},
		{"above best compression", Options{CompressionLevel: gzip.BestCompression + 1}, false},
	} {
		err := tc.opts.validate()
		if tc.ok && err != nil || !tc.ok && !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
