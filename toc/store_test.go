package toc_test

import (
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/toc"
)

func fetchedBase(t *testing.T) *toc.Layer {
	t.Helper()
	blob, tocDigest := baseBlob(t)
	l, err := toc.Fetch(testCtx(t), newSource(blob), blobDigest(blob), tocDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newStore(t *testing.T) (*toc.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tocs")
	s, err := toc.NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// storedPaths are the files Put writes: the compressed TOC and its
// metadata.
func storedPaths(dir string, d digest.Digest) (tocPath, metaPath string) {
	base := filepath.Join(dir, string(d.Algorithm()), d.Encoded())
	return base + ".toc.gz", base + ".meta.json"
}

// legacyPath is where an older lazyfs stored a TOC's JSON.
func legacyPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, string(d.Algorithm()), d.Encoded()+".json")
}

func TestStoreRoundTrip(t *testing.T) {
	l := fetchedBase(t)
	s, dir := newStore(t)
	if err := s.Put(l); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := s.Get(l.TOCDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.BlobDigest != l.BlobDigest || got.BlobSize != l.BlobSize || got.TOCDigest != l.TOCDigest || got.TOCOffset != l.TOCOffset {
		t.Errorf("Get = {%s %d %s %d}, want {%s %d %s %d}", got.BlobDigest, got.BlobSize, got.TOCDigest, got.TOCOffset,
			l.BlobDigest, l.BlobSize, l.TOCDigest, l.TOCOffset)
	}
	if !slices.Equal(cleanNames(got.TOC), cleanNames(l.TOC)) {
		t.Error("Get returned a different TOC than was put")
	}

	tocPath, metaPath := storedPaths(dir, l.TOCDigest)
	onDisk, err := os.ReadFile(tocPath)
	if err != nil || !slices.Equal(onDisk, l.TOCCompressed) {
		t.Errorf("%s does not hold the exact verified compressed TOC (%v)", tocPath, err)
	}
	modes := map[string]os.FileMode{
		dir:                          0o700 | os.ModeDir,
		filepath.Join(dir, "sha256"): 0o700 | os.ModeDir,
		tocPath:                      0o600,
		metaPath:                     0o600,
	}
	for p, want := range modes {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sha256"))
	if len(entries) != 2 {
		t.Errorf("store holds %d files, want 2 (no temporary files left)", len(entries))
	}

	// Putting the same layer again (another worker, a reload) is harmless.
	if err := s.Put(l); err != nil {
		t.Errorf("second Put: %v", err)
	}
	// A copy of the bytes Fetch verified is verified again, and kept.
	copied := *l
	copied.TOCCompressed = slices.Clone(l.TOCCompressed)
	if err := s.Put(&copied); err != nil {
		t.Errorf("Put of a copy of the verified bytes: %v", err)
	}
}

func TestStoreTightensExistingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tocs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := toc.NewStore(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestStoreGetErrors(t *testing.T) {
	l := fetchedBase(t)
	cases := []struct {
		name    string
		setup   func(t *testing.T, dir string) // runs after Put
		dgst    digest.Digest
		lim     func(toc.Limits) toc.Limits
		class   func(error) bool
		reason  string
		noLayer bool // the refusal cannot name the layer
		ok      bool // Get succeeds
	}{
		{name: "not stored", dgst: digest.FromString("other"), class: errdefs.IsNotFound},
		{name: "TOC file missing", class: errdefs.IsNotFound, setup: func(t *testing.T, dir string) {
			p, _ := storedPaths(dir, l.TOCDigest)
			os.Remove(p)
		}},
		{name: "metadata missing", class: errdefs.IsNotFound, setup: func(t *testing.T, dir string) {
			_, p := storedPaths(dir, l.TOCDigest)
			os.Remove(p)
		}},
		{name: "invalid digest", dgst: "sha256:../../etc/passwd", class: errdefs.IsInvalidArgument},
		{name: "TOC changed on disk", reason: toc.ReasonTOCDigestMismatch, setup: func(t *testing.T, dir string) {
			p, _ := storedPaths(dir, l.TOCDigest)
			os.WriteFile(p, compressTOC(t, append(tocJSON(t, l), ' '), gzip.DefaultCompression), 0o600)
		}},
		{name: "TOC not gzip on disk", reason: toc.ReasonMalformed, setup: func(t *testing.T, dir string) {
			p, _ := storedPaths(dir, l.TOCDigest)
			os.WriteFile(p, tocJSON(t, l), 0o600)
		}},
		{name: "legacy JSON changed on disk", reason: toc.ReasonTOCDigestMismatch, setup: func(t *testing.T, dir string) {
			p, _ := storedPaths(dir, l.TOCDigest)
			os.Remove(p)
			os.WriteFile(legacyPath(dir, l.TOCDigest), append(tocJSON(t, l), ' '), 0o600)
		}},
		{name: "at the compressed size limit", ok: true, lim: func(lim toc.Limits) toc.Limits { lim.MaxCompressedSize = int64(len(l.TOCCompressed)); return lim }},
		{name: "over a tighter compressed size limit", reason: toc.ReasonTOCTooLarge, lim: func(lim toc.Limits) toc.Limits { lim.MaxCompressedSize = 100; return lim }},
		{name: "legacy JSON over a tighter size limit", reason: toc.ReasonTOCTooLarge, lim: func(lim toc.Limits) toc.Limits { lim.MaxSize = 100; return lim }, setup: func(t *testing.T, dir string) {
			p, _ := storedPaths(dir, l.TOCDigest)
			os.Remove(p)
			os.WriteFile(legacyPath(dir, l.TOCDigest), tocJSON(t, l), 0o600)
		}},
		{name: "metadata corrupt", reason: toc.ReasonMalformed, noLayer: true, setup: func(t *testing.T, dir string) {
			_, p := storedPaths(dir, l.TOCDigest)
			os.WriteFile(p, []byte("{"), 0o600)
		}},
		{name: "metadata of another TOC", reason: toc.ReasonMalformed, setup: func(t *testing.T, dir string) {
			_, p := storedPaths(dir, l.TOCDigest)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.ReplaceAll(string(b), l.TOCDigest.String(), digest.FromString("x").String())), 0o600)
		}},
		{name: "metadata moves the TOC offset", reason: toc.ReasonBadOffset, setup: func(t *testing.T, dir string) {
			_, p := storedPaths(dir, l.TOCDigest)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"tocOffset":`, `"tocOffset":-`, 1)), 0o600)
		}},
		{name: "over a tighter size limit", reason: toc.ReasonTOCTooLarge, lim: func(lim toc.Limits) toc.Limits { lim.MaxSize = 100; return lim }},
		{name: "over a tighter entry limit", reason: toc.ReasonTooManyEntries, lim: func(lim toc.Limits) toc.Limits { lim.MaxEntries = 2; return lim }},
		{name: "invalid limits", class: errdefs.IsInvalidArgument, lim: func(toc.Limits) toc.Limits { return toc.Limits{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			if err := s.Put(l); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			dgst, lim := l.TOCDigest, toc.DefaultLimits()
			if tc.dgst != "" {
				dgst = tc.dgst
			}
			if tc.lim != nil {
				lim = tc.lim(lim)
			}
			_, err := s.Get(dgst, lim)
			if tc.ok {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				return
			}
			if tc.reason != "" {
				layer := l.BlobDigest
				if tc.noLayer {
					layer = ""
				}
				assertRefused(t, err, layer, tc.reason, "")
				return
			}
			if !tc.class(err) {
				t.Fatalf("Get error = %v, wrong class", err)
			}
			var re *toc.RefusedError
			if errors.As(err, &re) {
				t.Fatalf("Get error %v is a refusal", err)
			}
		})
	}
}

// TestStoreReadsLegacyJSON: a TOC an older lazyfs stored as its JSON is
// read (and verified) like one stored compressed, so that an upgrade
// keeps serving the layers it mounted without the registry.
func TestStoreReadsLegacyJSON(t *testing.T) {
	l := fetchedBase(t)
	s, dir := newStore(t)
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	p, _ := storedPaths(dir, l.TOCDigest)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacyPath(dir, l.TOCDigest), tocJSON(t, l), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(l.TOCDigest, toc.DefaultLimits())
	if err != nil {
		t.Fatalf("Get of a legacy JSON TOC: %v", err)
	}
	if got.BlobDigest != l.BlobDigest || !slices.Equal(cleanNames(got.TOC), cleanNames(l.TOC)) {
		t.Error("the legacy JSON TOC read back differs from what was put")
	}
}

func TestStorePutRefusesUnverifiedBytes(t *testing.T) {
	l := *fetchedBase(t)
	l.TOCCompressed = compressTOC(t, append(tocJSON(t, &l), ' '), gzip.DefaultCompression)
	s, dir := newStore(t)
	if err := s.Put(&l); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put of bytes that do not match the digest: %v, want invalid argument", err)
	}
	if err := s.Put(nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put(nil): %v, want invalid argument", err)
	}
	// As long as the bytes Fetch verified, but other bytes: verified again.
	other := *fetchedBase(t)
	changed := slices.Clone(other.TOCCompressed)
	changed[len(changed)/2] ^= 0xff
	other.TOCCompressed = changed
	if err := s.Put(&other); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put of bytes changed since Fetch: %v, want invalid argument", err)
	}
	// Fewer of the bytes Fetch verified: verified again.
	cut := *fetchedBase(t)
	cut.TOCCompressed = cut.TOCCompressed[:len(cut.TOCCompressed)/2]
	if err := s.Put(&cut); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put of a cut compressed TOC: %v, want invalid argument", err)
	}
	// No bytes at all (but not nil), on a layer Fetch did not return.
	empty := toc.Layer{BlobDigest: cut.BlobDigest, TOCDigest: cut.TOCDigest, TOCCompressed: []byte{}}
	if err := s.Put(&empty); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put of an empty compressed TOC: %v, want invalid argument", err)
	}
	left, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("a refused Put left %d files in the store: %v", len(left), left)
	}
}

func TestStoreConcurrentPut(t *testing.T) {
	l := fetchedBase(t)
	s, _ := newStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- s.Put(l) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Put: %v", err)
		}
	}
	if _, err := s.Get(l.TOCDigest, toc.DefaultLimits()); err != nil {
		t.Errorf("Get after concurrent Puts: %v", err)
	}
}

func TestNewStoreRemovesStaleTemporaryFiles(t *testing.T) {
	s, dir := newStore(t)
	l := fetchedBase(t)
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	algoDir := filepath.Join(dir, "sha256")
	stale := filepath.Join(algoDir, ".x.json.tmp-1")
	young := filepath.Join(algoDir, ".y.json.tmp-2")
	for _, p := range []string{stale, young} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := toc.NewStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file survived NewStore (%v)", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a temporary file another worker may be writing was removed: %v", err)
	}
	if _, err := s.Get(l.TOCDigest, toc.DefaultLimits()); err != nil {
		t.Errorf("stored TOC lost: %v", err)
	}
}

// TestStorePutFailureLeavesNothing guards the cleanup of a write that
// fails half-way: a Put whose metadata or TOC cannot be renamed into place
// (a directory stands there) reports it and leaves no temporary file
// behind.
func TestStorePutFailureLeavesNothing(t *testing.T) {
	l := fetchedBase(t)
	for _, which := range []string{"metadata", "TOC"} {
		t.Run(which, func(t *testing.T) {
			s, dir := newStore(t)
			tocPath, metaPath := storedPaths(dir, l.TOCDigest)
			blocked := metaPath
			if which == "TOC" {
				blocked = tocPath
			}
			if err := os.MkdirAll(filepath.Join(blocked, "blocker"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(l); err == nil {
				t.Fatalf("Put succeeded with a directory where its %s goes", which)
			}
			left, err := os.ReadDir(filepath.Dir(metaPath))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range left {
				if e.Name() != filepath.Base(blocked) && e.Name() != filepath.Base(metaPath) {
					t.Errorf("a failed Put left %s in the store", e.Name())
				}
			}
		})
	}
}
