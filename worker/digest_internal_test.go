package worker

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

func gzipMember(t *testing.T, data string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDigestBlob(t *testing.T) {
	multi := append(gzipMember(t, "first member, "), gzipMember(t, "second member")...)
	garbage := []byte("not gzip at all")
	tests := []struct {
		name       string
		blob       []byte
		wantDiffID digest.Digest // "" when it must not decompress
		wantSize   int64
	}{
		{"multi-member gzip (as eStargz)", multi, digest.FromString("first member, second member"), 27},
		{"not gzip", garbage, "", 0},
		{"gzip then trailing garbage", append(gzipMember(t, "x"), garbage...), "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := digestBlob(bytes.NewReader(tc.blob))
			if err != nil {
				t.Fatal(err)
			}
			// The compressed digest always covers every byte.
			if info.Digest != digest.FromBytes(tc.blob).String() || info.Size != int64(len(tc.blob)) {
				t.Errorf("compressed %s (%d bytes), want %s (%d)", info.Digest, info.Size, digest.FromBytes(tc.blob), len(tc.blob))
			}
			if info.DiffID != tc.wantDiffID.String() || info.UncompressedSize != tc.wantSize {
				t.Errorf("uncompressed %q (%d bytes), want %q (%d)", info.DiffID, info.UncompressedSize, tc.wantDiffID, tc.wantSize)
			}
			if (tc.wantDiffID == "") != (info.DecompressError != "") {
				t.Errorf("decompress error %q", info.DecompressError)
			}
		})
	}
}

// TestDigestBlobReadError: a failed read is an error, never digests of part
// of the blob.
func TestDigestBlobReadError(t *testing.T) {
	broken := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(gzipMember(t, "partial")[:10]), &failingReader{broken})
	if _, err := digestBlob(r); !errors.Is(err, broken) {
		t.Fatalf("digestBlob of a failing reader: %v, want %v", err, broken)
	}
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }
