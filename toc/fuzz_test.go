package toc_test

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

// fuzzLimits keep each fuzz run small.
var fuzzLimits = toc.Limits{MaxCompressedSize: 1 << 20, MaxSize: 1 << 20, MaxEntries: 10_000}

// FuzzFetchTOC feeds arbitrary TOC JSON, with a matching digest, through
// Fetch: it must never panic, every error must be a refusal (the source
// never fails), and an accepted TOC must have only safe names.
func FuzzFetchTOC(f *testing.F) {
	blob, _ := baseBlob(f)
	body, jtoc := splitBlob(f, blob)
	good, err := json.Marshal(jtoc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, s := range []string{
		`{"version":1,"entries":[{"name":"../x","type":"reg"}]}`,
		`{"version":1,"entries":[{"name":"a","type":"hardlink","linkName":"a"}]}`,
		`{"version":1,"entries":[{"name":"a","type":"reg","size":10,"offset":1,"chunkSize":4,"chunkDigest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},{"type":"chunk","offset":2,"chunkOffset":4}]}`,
		`{"version":1,"entries":[{"type":"chunk"}]}`,
		`{"version":1,"entries":[null]}`,
		`{"Version":1,"ENTRIES":[{"name":"./","type":"dir"}]}`,
	} {
		f.Add([]byte(s))
	}
	tail := footer(f, int64(len(body)))
	f.Fuzz(func(t *testing.T, tocJSON []byte) {
		// Stored gzip blocks: compressing is not what is being fuzzed, and
		// it would dominate every run.
		blob := slices.Concat(body, compressTOC(t, tocJSON, gzip.NoCompression), tail)
		tocDigest := digest.FromBytes(tocJSON)
		l, err := toc.Fetch(t.Context(), newSource(blob), blobDigest(blob), tocDigest, fuzzLimits)
		if err != nil {
			var re *toc.RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("error is not a refusal: %v", err)
			}
			return
		}
		assertSafe(t, l)
	})
}

// FuzzFetchBlob feeds arbitrary blobs and annotations through Fetch.
func FuzzFetchBlob(f *testing.F) {
	blob, tocDigest := baseBlob(f)
	f.Add(blob, tocDigest.String())
	f.Add(blob[len(blob)-200:], tocDigest.String())
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, blob []byte, annotation string) {
		l, err := toc.Fetch(t.Context(), newSource(blob), blobDigest(blob), digest.Digest(annotation), fuzzLimits)
		if err != nil {
			var re *toc.RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("error is not a refusal: %v", err)
			}
			return
		}
		assertSafe(t, l)
	})
}

func assertSafe(t *testing.T, l *toc.Layer) {
	t.Helper()
	if err := toc.Validate(l, fuzzLimits); err != nil {
		t.Fatalf("accepted layer fails Validate: %v", err)
	}
	for _, e := range l.TOC.Entries {
		if e.Type == "chunk" {
			continue
		}
		c := path.Clean(e.Name)
		if strings.HasPrefix(e.Name, "/") || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsRune(e.Name, 0) {
			t.Fatalf("accepted unsafe name %q", e.Name)
		}
	}
}
