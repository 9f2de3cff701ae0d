package worker_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/log/logtest"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/chunks"
	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/internal/testregistry"
	"github.com/lazyfs/lazyfs/remote"
	"github.com/lazyfs/lazyfs/toc"
	"github.com/lazyfs/lazyfs/worker"
)

// tocChildEnv makes the test binary run TestLoadTOCChild as the child
// process of BenchmarkLoadTOC300k: "<mode> <root> <image ref> <layer
// digest> <toc digest>".
const tocChildEnv = "LAZYFS_TOC_CHILD"

// forgeManyEntries builds an eStargz blob of n entries shaped like a big
// node_modules tree (a directory per 20 files, each file one chunk of 16
// compressed bytes), its TOC written by estargz's own compressor.
func forgeManyEntries(tb testing.TB, n int) (blob []byte, layer, tocDigest digest.Digest) {
	tb.Helper()
	const bytesPerChunk = 16
	jtoc := &estargz.JTOC{Version: 1}
	off := int64(512) // a blob's payload starts after its first headers
	dir := ""
	for i := 0; len(jtoc.Entries) < n; i++ {
		if i%20 == 0 {
			dir = fmt.Sprintf("node_modules/pkg%06d/lib/", i/20)
			jtoc.Entries = append(jtoc.Entries, &estargz.TOCEntry{Name: dir, Type: "dir", Mode: 0o755, ModTime3339: "2024-01-02T03:04:05Z"})
			continue
		}
		d := digest.FromString(strconv.Itoa(i)).String()
		jtoc.Entries = append(jtoc.Entries, &estargz.TOCEntry{
			Name: fmt.Sprintf("%sfile%d.js", dir, i), Type: "reg", Size: 1000, Mode: 0o644,
			ModTime3339: "2024-01-02T03:04:05Z", Offset: off, Digest: d, ChunkDigest: d,
		})
		off += bytesPerChunk
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, off))
	tocDigest, err := estargz.NewGzipCompressorWithLevel(gzip.DefaultCompression).WriteTOCAndFooter(&buf, off, jtoc, sha256.New())
	if err != nil {
		tb.Fatal(err)
	}
	blob = buf.Bytes()
	return blob, digest.FromBytes(blob), tocDigest
}

// BenchmarkLoadTOC300k measures the peak RSS (VmHWM) of a process that
// loads one 300,000-entry layer as a worker does (with a chunk cache, where
// the layer's chunk list is recorded), in a fresh child process per run: "fetch" from a registry (which runs in the benchmark's process,
// as a registry is no part of a worker), then "stored" from the TOC kept
// on disk, as a successor or a restarted snapshotter's worker does.
// Issue #11's target: at most 150 MiB.
//
//	go test -run '^$' -bench LoadTOC300k -benchtime 5x ./worker/
func BenchmarkLoadTOC300k(b *testing.B) {
	blob, layer, tocDigest := forgeManyEntries(b, 300_000)
	reg := testregistry.New(b, testRepo)
	reg.AddBlob(blob)
	for _, mode := range []string{"fetch", "stored"} {
		b.Run(mode, func(b *testing.B) {
			root := b.TempDir()
			if mode == "stored" {
				// The fetch run keeps the TOC under root/tocs.
				runTOCChild(b, "fetch", root, reg.Ref("v1"), layer, tocDigest)
			}
			var peaks []float64
			for b.Loop() {
				peaks = append(peaks, runTOCChild(b, mode, root, reg.Ref("v1"), layer, tocDigest))
			}
			slices.Sort(peaks)
			b.ReportMetric(peaks[len(peaks)/2], "peak_rss_MiB")
			b.ReportMetric(peaks[len(peaks)-1], "max_peak_rss_MiB")
		})
	}
}

// runTOCChild runs TestLoadTOCChild in a child process and returns its
// peak RSS in MiB.
func runTOCChild(b *testing.B, mode, root, ref string, layer, tocDigest digest.Digest) float64 {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadTOCChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %s %s", tocChildEnv, mode, root, ref, layer, tocDigest))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "peak_rss_kib="); ok {
			kib, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib / 1024
		}
	}
	b.Fatalf("child printed no peak:\n%s", out)
	return 0
}

// TestLoadTOCChild is BenchmarkLoadTOC300k's child process; without its
// environment variable it has nothing to do and passes.
func TestLoadTOCChild(t *testing.T) {
	spec := os.Getenv(tocChildEnv)
	if spec == "" {
		return
	}
	f := strings.Fields(spec)
	mode, root, ref, layer, tocDigest := f[0], f[1], f[2], f[3], f[4]
	if mode == "stored" {
		ref = "127.0.0.1:1/none/none:v1" // the registry is never asked
	}
	// As lazyfsd runs it: with the node's chunk cache, where the load
	// records the layer's chunks.
	ctx := logtest.WithT(context.Background(), t)
	disk, err := cache.Open(ctx, filepath.Join(root, "cache"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(ctx, worker.Options{
		ID: "child", Root: root, Resolver: remote.NewResolver(remote.Options{}), Limits: toc.DefaultLimits(), FuseReaders: 2,
		Cache: disk, Chunks: chunks.Options{Disk: disk},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.LoadLayer(context.Background(), daemonapi.LoadLayerRequest{
		MountID: "m", ImageRef: ref, LayerDigest: layer, TOCDigest: tocDigest, Mountpoint: "/mnt/m",
	}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fmt.Printf("peak_rss_kib=%s\n", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
}
