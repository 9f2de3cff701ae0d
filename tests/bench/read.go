package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// readSize is the size of each read(2) of the sequential read.
const readSize = 1 << 20

// readResult is one sequential read of bigFilePath through a rootfs view.
type readResult struct {
	Snapshotter string  `json:"snapshotter"`
	ColdMiBps   float64 `json:"cold_mib_per_s"`
	// WarmMiBps is a second read right after the cold one (lazyfs only):
	// what the kernel's page cache and FUSE keep-cache give.
	WarmMiBps float64 `json:"warm_mib_per_s,omitempty"`
	// RegistryBytes and RegistryRequests are the blob bytes the registry
	// served, and the blob GET requests it answered, during the cold read.
	RegistryBytes    int64 `json:"registry_bytes"`
	RegistryRequests int   `json:"registry_requests"`
	// ResidentPct is the share of the file's pages in the page cache right
	// before the cold read: anything but 0 means it was not cold.
	ResidentPct float64 `json:"resident_pct_before_cold_read"`
}

// readBigFile mounts a view of ref's rootfs from snapshotter, drops the page
// cache, and reads bigFilePath once (and a second time when warm is set),
// checking every byte against want.
func readBigFile(ctx context.Context, st *stack, ref, snapshotter string, want [sha256.Size]byte, warm bool) (_ readResult, err error) {
	dir := filepath.Join(st.dir, "view-"+snapshotter)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return readResult{}, fmt.Errorf("failed to create view dir: %w", err)
	}
	cleanup, err := harness.MountImageRootfs(ctx, st.cl, ref, snapshotter, dir)
	if err != nil {
		return readResult{}, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()

	buf := make([]byte, bigFileSize)
	if err := dropCaches(); err != nil {
		return readResult{}, err
	}
	layers, err := imageLayers(ctx, st.cl, ref)
	if err != nil {
		return readResult{}, err
	}
	p := filepath.Join(dir, bigFilePath)
	r := readResult{Snapshotter: snapshotter}
	if r.ResidentPct, err = residentPercent(p); err != nil {
		return readResult{}, err
	}
	st.proxy.Reset()
	d, err := timedRead(ctx, p, buf, want)
	if err != nil {
		return readResult{}, err
	}
	r.ColdMiBps, r.RegistryBytes = mibPerSecond(d), st.proxy.TotalBlobBytes()
	for _, l := range layers {
		r.RegistryRequests += st.proxy.BlobRequests(l)
	}
	progress("    %-9s cold read %.1f MiB/s (%s), registry served %s in %d requests; %.0f%% cached before", snapshotter,
		r.ColdMiBps, d.Round(time.Millisecond), mib(r.RegistryBytes), r.RegistryRequests, r.ResidentPct)
	if warm {
		d, err := timedRead(ctx, p, buf, want)
		if err != nil {
			return readResult{}, err
		}
		r.WarmMiBps = mibPerSecond(d)
		progress("    %-9s warm read %.1f MiB/s (%s)", snapshotter, r.WarmMiBps, d.Round(time.Millisecond))
	}
	return r, nil
}

// timedRead reads the file at p into buf with readSize reads and returns
// how long open and reads took. The content is checked after the clock
// stops, so that hashing does not count as reading.
func timedRead(ctx context.Context, p string, buf []byte, want [sha256.Size]byte) (time.Duration, error) {
	start := time.Now()
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("failed to open %s: %w", p, err)
	}
	defer f.Close()
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if n == len(buf) {
			// One more read must say EOF: a longer file is wrong too.
			var extra [1]byte
			if m, _ := f.Read(extra[:]); m > 0 {
				return 0, fmt.Errorf("wrong bytes: %s is longer than %d bytes", p, len(buf))
			}
			break
		}
		m, err := f.Read(buf[n:min(n+readSize, len(buf))])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("failed to read %s at offset %d: %w", p, n, err)
		}
	}
	d := time.Since(start)
	if n != len(buf) {
		return 0, fmt.Errorf("wrong bytes: %s has %d bytes, want %d", p, n, len(buf))
	}
	if got := sha256.Sum256(buf); got != want {
		return 0, fmt.Errorf("wrong bytes: sha256 of %s is %x, want %x", p, got, want)
	}
	return d, nil
}

func mibPerSecond(d time.Duration) float64 {
	return float64(bigFileSize) / (1 << 20) / d.Seconds()
}

// residentPercent returns the share of p's pages that are in the page cache,
// without reading them: mmap(2) and mincore(2) fault nothing in.
func residentPercent(p string) (float64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("failed to open %s: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("failed to stat %s: %w", p, err)
	}
	if fi.Size() == 0 {
		return 0, nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("failed to map %s: %w", p, err)
	}
	defer unix.Munmap(data)
	page := int64(os.Getpagesize())
	vec := make([]byte, (fi.Size()+page-1)/page)
	// x/sys/unix has no mincore wrapper on Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, fmt.Errorf("failed to query the page cache of %s: %w", p, errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	return 100 * float64(resident) / float64(len(vec)), nil
}

// imageLayers returns the layer digests of ref for the host platform.
func imageLayers(ctx context.Context, cl *client.Client, ref string) ([]digest.Digest, error) {
	blobs, err := imageBlobs(ctx, cl, ref)
	if err != nil {
		return nil, err
	}
	return blobs[1:], nil
}

// imageBlobs returns the config and layer digests of ref for the host
// platform (the config first): every blob its pull may fetch.
func imageBlobs(ctx context.Context, cl *client.Client, ref string) ([]digest.Digest, error) {
	img, err := cl.GetImage(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("failed to get image %s: %w", ref, err)
	}
	m, err := images.Manifest(ctx, cl.ContentStore(), img.Target(), platforms.Default())
	if err != nil {
		return nil, fmt.Errorf("failed to read the manifest of %s: %w", ref, err)
	}
	out := []digest.Digest{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out, nil
}
