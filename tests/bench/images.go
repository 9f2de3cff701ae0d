package main

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// Shape of the images. Every byte is deterministic, so the layer digests are
// the same on every run of the benchmark.
const (
	// bigFilePath is the file the cold-read scenario reads: incompressible,
	// so that what crosses the "network" is what the reader asked for.
	bigFilePath = "/data/random-64m"
	bigFileSize = 64 << 20
	bigFileSeed = 64

	// mediumFiles files of mediumFileSize, incompressible too, make the
	// image's fourth layer.
	mediumFiles    = 4
	mediumFileSize = 16 << 20
	mediumFileSeed = 16
	mediumFilePath = "/data/random-16m-%d"

	smallDirs     = 20
	smallPerDir   = 100 // smallDirs*smallPerDir small files of smallFileSize
	smallFileSize = 4 << 10
	smallFileSeed = 7
	smallFilesDir = "/data/small"

	// manyDirs directories at the root of the many-entry layer share the
	// layer's files; with the default 300,000 entries that is 300 dirs of
	// 999 files.
	manyDirs = 300
)

// appImage is the image of the pull and read scenarios, shaped like the
// one issue 13 measures stargz-snapshotter on: a Debian minbase rootfs,
// 2,000 small files, one 64 MiB pseudo-random file in a layer of its own,
// and four 16 MiB ones in another.
type appImage struct {
	layers []harness.Layer
	// bigSHA256 is the digest every read of bigFilePath must produce.
	bigSHA256 [sha256.Size]byte
}

func newAppImage(base harness.Layer) (appImage, error) {
	rng := rand.New(rand.NewChaCha8(seed(smallFileSeed)))
	small := harness.Layer{{Path: "/data", Mode: os.ModeDir | 0o755}, {Path: "/data/small", Mode: os.ModeDir | 0o755}}
	for d := range smallDirs {
		dir := fmt.Sprintf("/data/small/d%02d", d)
		small = append(small, harness.File{Path: dir, Mode: os.ModeDir | 0o755})
		for f := range smallPerDir {
			content := make([]byte, smallFileSize)
			for i := range content {
				// Text-like bytes: small files in images compress well.
				content[i] = 'a' + byte(rng.IntN(16))
			}
			small = append(small, harness.File{Path: path.Join(dir, fmt.Sprintf("f%04d", f)), Mode: 0o644, Content: content})
		}
	}

	data := make([]byte, bigFileSize)
	_, _ = rand.NewChaCha8(seed(bigFileSeed)).Read(data) // ChaCha8.Read never fails
	big := harness.Layer{
		{Path: "/data", Mode: os.ModeDir | 0o755},
		{Path: bigFilePath, Mode: 0o644, Content: data},
	}
	medium := harness.Layer{{Path: "/data", Mode: os.ModeDir | 0o755}}
	for i := range mediumFiles {
		data := make([]byte, mediumFileSize)
		_, _ = rand.NewChaCha8(seed(mediumFileSeed + byte(i))).Read(data)
		medium = append(medium, harness.File{Path: fmt.Sprintf(mediumFilePath, i), Mode: 0o644, Content: data})
	}
	return appImage{layers: []harness.Layer{base, small, big, medium}, bigSHA256: sha256.Sum256(data)}, nil
}

// manyEntryLayer returns a layer of exactly entries entries: manyDirs
// directories at the root holding entries-manyDirs tiny files between them.
// Every file has a few bytes of content, so every TOC entry carries a chunk
// digest, as in a real layer.
func manyEntryLayer(entries int) harness.Layer {
	files := entries - manyDirs
	l := make(harness.Layer, 0, entries)
	for d := range manyDirs {
		dir := fmt.Sprintf("/d%03d", d)
		l = append(l, harness.File{Path: dir, Mode: os.ModeDir | 0o755})
		// Spread the files evenly; the first dirs take the remainder.
		n := files / manyDirs
		if d < files%manyDirs {
			n++
		}
		for f := range n {
			l = append(l, harness.File{
				Path:    fmt.Sprintf("%s/f%04d", dir, f),
				Mode:    0o644,
				Content: fmt.Appendf(nil, "%d/%d\n", d, f),
			})
		}
	}
	return l
}

func seed(n byte) [32]byte {
	var s [32]byte
	s[0] = n
	return s
}
