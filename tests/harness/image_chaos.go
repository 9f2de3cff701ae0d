package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lazyfs/lazyfs/tests/chaos"
)

// Paths of the chaos images.
const (
	// ChaosReaderPath is the reader program (package tests/chaos/reader),
	// in the shared base layer.
	ChaosReaderPath = "/chaos/reader"
	// ChaosManifestPath is the image's manifest, in its own top layer.
	ChaosManifestPath = "/chaos/manifest.json"
	// chaosBlockSize is the block the reader preads big files by.
	chaosBlockSize = 64 << 10
)

// BuildChaosReader builds the reader program static (CGO_ENABLED=0) into
// dir and returns its path. The Go toolchain is the one running the tests
// (GOROOT/bin/go), else the go on PATH.
func BuildChaosReader(ctx context.Context, env Env, dir string) (string, error) {
	goBin := filepath.Join(goRoot(), "bin", "go")
	if !isExecutable(goBin) {
		p, err := exec.LookPath("go")
		if err != nil {
			return "", fmt.Errorf("no go toolchain to build the chaos reader: %w", err)
		}
		goBin = p
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "chaos-reader")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./tests/chaos/reader")
	cmd.Dir = env.RepoRoot
	cmd.Env = append(withoutVar(os.Environ(), "CGO_ENABLED"), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to build the chaos reader: %w\n%s", err, stderr.String())
	}
	return out, nil
}

// goRoot is runtime.GOROOT without its deprecation: $GOROOT, else the
// toolchain's own answer.
func goRoot() string {
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// ChaosImageLayers returns the layers of the chaos images named by names
// (e.g. "a", "b"): every image is the same base layer, which holds the
// reader binary and data under /chaos/base, plus a top layer of its own
// with data under /chaos/<name> and ChaosManifestPath listing the sha256 of
// every file the image holds (per 64 KiB block for the big ones) and the
// entries of every directory the reader lists. Each image directory holds
// only the files of one layer, so that overlayfs passes every readdir to
// that layer's FUSE mount instead of merging. Every byte is deterministic.
func ChaosImageLayers(reader []byte, names ...string) map[string][]Layer {
	var base layerBuilder
	var baseMan chaos.Manifest
	base.dir("/chaos", 0o755)
	base.file(ChaosReaderPath, 0o755, reader)
	// Read by blocks: the whole binary is bigger than a small file.
	baseMan.Files = append(baseMan.Files, chaosSum(ChaosReaderPath, reader, true))
	chaosData(&base, &baseMan, "/chaos/base", 4<<20, 4)

	out := map[string][]Layer{}
	for _, name := range names {
		var top layerBuilder
		man := chaos.Manifest{Files: slices.Clone(baseMan.Files), Dirs: slices.Clone(baseMan.Dirs)}
		top.dir("/chaos", 0o755)
		chaosData(&top, &man, "/chaos/"+name, 2<<20, 3)
		b, err := json.MarshalIndent(man, "", " ")
		if err != nil {
			panic(err) // plain structs always encode
		}
		top.file(ChaosManifestPath, 0o644, b)
		out[name] = []Layer{base.l, top.l}
	}
	return out
}

// chaosData adds under dir a big file of bigSize bytes (read with pread) and
// dirs directories of 40 small files of 0 to 48 KiB, and lists them in man.
func chaosData(b *layerBuilder, man *chaos.Manifest, dir string, bigSize, dirs int) {
	b.dir(dir, 0o755)
	big := chaosBytes(dir+"/big", bigSize)
	b.file(dir+"/big", 0o644, big)
	man.Files = append(man.Files, chaosSum(dir+"/big", big, true))
	rng := rand.New(rand.NewPCG(uint64(len(dir)), uint64(bigSize)))
	for d := range dirs {
		sub := fmt.Sprintf("%s/d%d", dir, d)
		b.dir(sub, 0o755)
		list := chaos.DirList{Path: sub}
		for i := range 40 {
			name := fmt.Sprintf("f%03d", i)
			p := sub + "/" + name
			content := chaosBytes(p, rng.IntN(48<<10+1))
			b.file(p, 0o644, content)
			man.Files = append(man.Files, chaosSum(p, content, false))
			list.Entries = append(list.Entries, name)
		}
		man.Dirs = append(man.Dirs, list)
	}
}

// chaosBytes returns n incompressible bytes determined by label.
func chaosBytes(label string, n int) []byte {
	key := sha256.Sum256([]byte(label))
	buf := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(buf)
	return buf
}

func chaosSum(p string, content []byte, blocks bool) chaos.FileSum {
	sum := sha256.Sum256(content)
	f := chaos.FileSum{Path: p, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
	if blocks {
		f.BlockSize = chaosBlockSize
		for off := 0; off < len(content); off += chaosBlockSize {
			s := sha256.Sum256(content[off:min(off+chaosBlockSize, len(content))])
			f.Blocks = append(f.Blocks, hex.EncodeToString(s[:]))
		}
	}
	return f
}
