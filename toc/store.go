package toc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const (
	// compressedSuffix names a stored TOC: its compressed bytes as the
	// blob holds them (a gzip member holding a tar of the TOC JSON).
	compressedSuffix = ".toc.gz"
	// tocSuffix names a TOC stored by an older lazyfs: the JSON itself,
	// about ten times larger; still read, never written.
	tocSuffix  = ".json"
	metaSuffix = ".meta.json"
	tempInfix  = ".tmp-"
	// maxMetaSize bounds the metadata file read back: it holds three short values.
	maxMetaSize = 4 << 10
	// staleTempAge is how old a temporary file must be before NewStore
	// removes it: several workers share the directory, and a younger one
	// may belong to a Put in progress.
	staleTempAge = time.Hour
)

// Store keeps verified TOCs on disk so that a worker can serve a layer again
// after a restart without the registry. Each TOC is two files under
// <dir>/<algorithm>/: <encoded>.toc.gz, the TOC's compressed bytes as the
// blob holds them (Get inflates them and verifies the JSON's digest again),
// and <encoded>.meta.json, where the TOC sits in which blob. A TOC stored
// by an older lazyfs as its JSON, <encoded>.json, is read too.
//
// Several workers may share one directory: every file is written under a
// temporary name, synced and renamed, so a reader sees a whole file or none.
type Store struct {
	dir string
}

// storedMeta is the content of <encoded>.meta.json.
type storedMeta struct {
	BlobDigest digest.Digest `json:"blobDigest"`
	BlobSize   int64         `json:"blobSize"`
	TOCDigest  digest.Digest `json:"tocDigest"`
	TOCOffset  int64         `json:"tocOffset"`
}

// NewStore opens (creating it if needed, mode 0700) the store in dir, and
// removes temporary files that crashed writers left behind.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create TOC store %s: %w", dir, err)
	}
	// The directory may predate us with a wider mode; TOCs describe
	// private images.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to restrict TOC store %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	if err := s.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		return nil, err
	}
	return s, nil
}

// Put stores l's compressed TOC and metadata. It refuses
// (errdefs.ErrInvalidArgument) a layer whose JSON does not match its
// TOCDigest. The metadata is written first, so that a TOC file is never
// found without it. Storing the compressed bytes, not the JSON, writes and
// syncs a tenth of the bytes while a pull waits for the layer.
func (s *Store) Put(l *Layer) error {
	if l == nil {
		return fmt.Errorf("no layer to store: %w", errdefs.ErrInvalidArgument)
	}
	if err := l.TOCDigest.Validate(); err != nil {
		return fmt.Errorf("invalid TOC digest %q: %w: %w", l.TOCDigest, err, errdefs.ErrInvalidArgument)
	}
	if err := l.BlobDigest.Validate(); err != nil {
		return fmt.Errorf("invalid blob digest %q: %w: %w", l.BlobDigest, err, errdefs.ErrInvalidArgument)
	}
	if l.TOCCompressed == nil {
		return fmt.Errorf("layer %s has no compressed TOC to store: %w", l.BlobDigest, errdefs.ErrInvalidArgument)
	}
	meta, err := json.Marshal(storedMeta{
		BlobDigest: l.BlobDigest,
		BlobSize:   l.BlobSize,
		TOCDigest:  l.TOCDigest,
		TOCOffset:  l.TOCOffset,
	})
	if err != nil {
		return fmt.Errorf("failed to encode TOC metadata: %w", err)
	}
	dir := filepath.Join(s.dir, string(l.TOCDigest.Algorithm()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create TOC store directory: %w", err)
	}
	// Verified before anything is written (unless Fetch did, and they
	// are still the bytes it verified): bytes that are not the TOC leave
	// nothing behind.
	if !l.compressedVerified() {
		if err := verifyCompressed(l); err != nil {
			return err
		}
	}
	name := l.TOCDigest.Encoded()
	if err := writeFileAtomic(dir, name+metaSuffix, meta); err != nil {
		return err
	}
	if err := writeFileAtomic(dir, name+compressedSuffix, l.TOCCompressed); err != nil {
		return err
	}
	return syncDir(dir)
}

// verifyCompressed checks that l's compressed TOC inflates to JSON of
// digest l.TOCDigest.
func verifyCompressed(l *Layer) error {
	raw, _, err := openTOC(l.TOCCompressed, math.MaxInt64)
	if err != nil {
		return fmt.Errorf("compressed TOC of layer %s: %w: %w", l.BlobDigest, err, errdefs.ErrInvalidArgument)
	}
	h := l.TOCDigest.Algorithm().Hash()
	if _, err := io.Copy(h, raw); err != nil {
		return fmt.Errorf("compressed TOC of layer %s: %w: %w", l.BlobDigest, err, errdefs.ErrInvalidArgument)
	}
	if got := digestOf(l.TOCDigest, h); got != l.TOCDigest {
		return fmt.Errorf("TOC JSON of layer %s has digest %s, not %s: %w", l.BlobDigest, got, l.TOCDigest, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Get loads the TOC stored under tocDigest, verifies its digest and
// validates it against lim (which may be stricter than when it was stored).
// A TOC that is not stored yields errdefs.ErrNotFound; one that no longer
// verifies or validates yields a *RefusedError.
func (s *Store) Get(tocDigest digest.Digest, lim Limits) (*Layer, error) {
	var c collector
	l, err := s.GetTo(tocDigest, lim, &c)
	if err != nil {
		return nil, err
	}
	l.TOC = c.jtoc()
	return l, nil
}

// GetTo is Get for a caller that builds its own structure from the
// entries, as FetchTo is for Fetch: none is kept, the returned Layer's TOC
// is nil, and what sink built is valid only if GetTo returns no error.
func (s *Store) GetTo(tocDigest digest.Digest, lim Limits, sink Sink) (_ *Layer, retErr error) {
	if err := tocDigest.Validate(); err != nil {
		return nil, fmt.Errorf("invalid TOC digest %q: %w: %w", tocDigest, err, errdefs.ErrInvalidArgument)
	}
	if err := lim.check(); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.dir, string(tocDigest.Algorithm()))
	name := tocDigest.Encoded()
	meta, err := readMeta(filepath.Join(dir, name+metaSuffix), tocDigest)
	if err != nil {
		return nil, err
	}
	defer func() { retErr = withLayer(retErr, meta.BlobDigest) }()

	raw, size, closeTOC, err := openStored(dir, name, tocDigest, lim)
	if err != nil {
		return nil, err
	}
	defer closeTOC()
	// Decoded as it is inflated or read, and verified: the JSON is never
	// held whole. The API has no ctx: decoding a stored TOC cannot be
	// cancelled.
	_, _, err = decodeInto(context.Background(), raw, size, tocDigest, meta.BlobSize, meta.TOCOffset, lim, sink)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) && re.Reason == ReasonTOCDigestMismatch {
			return nil, refuse(ReasonTOCDigestMismatch, "", fmt.Errorf("stored %w", err))
		}
		return nil, err
	}
	return &Layer{
		BlobDigest: meta.BlobDigest,
		BlobSize:   meta.BlobSize,
		TOCDigest:  tocDigest,
		TOCOffset:  meta.TOCOffset,
	}, nil
}

func readMeta(path string, tocDigest digest.Digest) (*storedMeta, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("TOC %s: %w", tocDigest, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open TOC metadata: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read TOC metadata: %w", err)
	}
	var m storedMeta
	if len(b) > maxMetaSize {
		err = errors.New("too large")
	} else if err = json.Unmarshal(b, &m); err == nil {
		err = m.check(tocDigest)
	}
	if err != nil {
		re := refuse(ReasonMalformed, "", fmt.Errorf("stored metadata of TOC %s: %w", tocDigest, err))
		if m.BlobDigest.Validate() == nil {
			re.Layer = m.BlobDigest
		}
		return nil, re
	}
	return &m, nil
}

func (m *storedMeta) check(tocDigest digest.Digest) error {
	if err := m.BlobDigest.Validate(); err != nil {
		return fmt.Errorf("blob digest %q: %w", m.BlobDigest, err)
	}
	if m.TOCDigest != tocDigest {
		return fmt.Errorf("names TOC %s", m.TOCDigest)
	}
	return nil
}

// openStored opens the JSON of the TOC stored as dir/name: inflated from
// its compressed bytes, or read from the JSON an older lazyfs stored. It
// returns the JSON's size as its container declares it, and a func that
// closes what it opened. Either is refused before it is read if it is
// larger than lim allows.
func openStored(dir, name string, tocDigest digest.Digest, lim Limits) (io.Reader, int64, func(), error) {
	f, size, err := openBounded(filepath.Join(dir, name+compressedSuffix), tocDigest, lim.MaxCompressedSize, "compressed TOC")
	if err == nil {
		defer f.Close()
		compressed := make([]byte, size)
		if _, err := io.ReadFull(f, compressed); err != nil {
			return nil, 0, nil, fmt.Errorf("failed to read stored TOC: %w", err)
		}
		raw, declared, err := openTOC(compressed, lim.MaxSize)
		if err != nil {
			return nil, 0, nil, err
		}
		return raw, declared, func() {}, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, 0, nil, err
	}
	f, size, err = openBounded(filepath.Join(dir, name+tocSuffix), tocDigest, lim.MaxSize, "TOC JSON")
	if err != nil {
		return nil, 0, nil, err
	}
	return bufio.NewReaderSize(f, 64<<10), size, func() { f.Close() }, nil
}

// openBounded opens a stored file of a TOC (what names it), refusing it
// before reading if it is larger than maxSize; it returns its size.
func openBounded(path string, tocDigest digest.Digest, maxSize int64, what string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("TOC %s: %w", tocDigest, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("failed to open stored TOC: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("failed to stat stored TOC: %w", err)
	}
	if fi.Size() > maxSize {
		f.Close()
		return nil, 0, refuse(ReasonTOCTooLarge, "", fmt.Errorf("stored %s is %d bytes, limit is %d", what, fi.Size(), maxSize))
	}
	return f, fi.Size(), nil
}

// writeFileAtomic writes data to dir/name with mode 0600 through a synced
// temporary file and a rename.
func writeFileAtomic(dir, name string, data []byte) (retErr error) {
	f, err := os.CreateTemp(dir, "."+name+tempInfix+"*") // mode 0600
	if err != nil {
		return fmt.Errorf("failed to create temporary file for %s: %w", name, err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("failed to rename %s into place: %w", name, err)
	}
	return nil
}

// syncDir makes the renames durable: restore after a reboot reads these
// files without asking the registry.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps removes temporary files older than cutoff from the
// algorithm directories.
func (s *Store) removeStaleTemps(cutoff time.Time) error {
	algos, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("failed to read TOC store %s: %w", s.dir, err)
	}
	for _, a := range algos {
		if !a.IsDir() {
			continue
		}
		dir := filepath.Join(s.dir, a.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("failed to read TOC store %s: %w", dir, err)
		}
		for _, f := range files {
			if !strings.HasPrefix(f.Name(), ".") || !strings.Contains(f.Name(), tempInfix) {
				continue
			}
			if fi, err := f.Info(); err != nil || fi.ModTime().After(cutoff) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, f.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("failed to remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}
