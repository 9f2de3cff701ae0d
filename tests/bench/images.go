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

// busyboxApplets are linked to /bin/busybox: `true` is the first command,
// the rest make the image usable by hand.
var busyboxApplets = []string{"sh", "true", "cat", "ls", "sha256sum"}

// appImage is the image of the pull and read scenarios: a busybox base, a
// few thousand small files, and one 64 MiB pseudo-random file in a layer of
// its own.
type appImage struct {
	layers []harness.Layer
	// bigSHA256 is the digest every read of bigFilePath must produce.
	bigSHA256 [sha256.Size]byte
}

func newAppImage(busyboxPath string) (appImage, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return appImage{}, fmt.Errorf("failed to read busybox: %w", err)
	}
	base := harness.Layer{
		{Path: "/bin", Mode: os.ModeDir | 0o755},
		{Path: "/bin/busybox", Mode: 0o755, Content: bb},
	}
	for _, a := range busyboxApplets {
		base = append(base, harness.File{Path: "/bin/" + a, Mode: os.ModeSymlink | 0o777, Linkname: "busybox"})
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/etc", "/run"} {
		base = append(base, harness.File{Path: d, Mode: os.ModeDir | 0o755})
	}
	base = append(base,
		harness.File{Path: "/tmp", Mode: os.ModeDir | os.ModeSticky | 0o777},
		harness.File{Path: "/etc/passwd", Mode: 0o644, Content: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		harness.File{Path: "/etc/group", Mode: 0o644, Content: []byte("root:x:0:\n")},
	)

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
	return appImage{layers: []harness.Layer{base, small, big}, bigSHA256: sha256.Sum256(data)}, nil
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
