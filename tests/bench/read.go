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
	// RegistryBytes are the blob bytes the registry served during the cold
	// read.
	RegistryBytes int64 `json:"registry_bytes"`
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
	st.proxy.Reset()
	p := filepath.Join(dir, bigFilePath)
	d, err := timedRead(ctx, p, buf, want)
	if err != nil {
		return readResult{}, err
	}
	r := readResult{Snapshotter: snapshotter, ColdMiBps: mibPerSecond(d), RegistryBytes: st.proxy.TotalBlobBytes()}
	progress("    %-9s cold read %.1f MiB/s (%s), registry served %s", snapshotter, r.ColdMiBps, d.Round(time.Millisecond), mib(r.RegistryBytes))
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
