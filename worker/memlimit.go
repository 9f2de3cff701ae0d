package worker

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/internal/mmapbuf"
)

// MemoryOverhead is what a worker needs besides its memory tier while it
// serves: the runtime, the FUSE and HTTP machinery, the chunks of reads in
// flight (a 4 MiB compressed range and its decompressed chunk each) and the
// disk writer's queue. With the default tier (16 MiB) a worker serving
// small layers stays at about 40 MiB, whatever it read.
const MemoryOverhead = 24 << 20

// memoryLimitEvery is how often the limit follows the live heap.
const memoryLimitEvery = 5 * time.Second

// memoryLimit is the soft limit (runtime/debug.SetMemoryLimit) for a worker
// whose memory tier is budget and whose heap held live bytes at the last
// collection. The chunks a cold read fetches are garbage soon after (4 MiB
// each); with GOGC alone a worker holding little lets the heap grow to
// twice what it holds, and keeps those pages long after. The limit makes
// the collector and the scavenger hand them back. It never goes below
// what GOGC would allow for the live heap (a TOC of 300,000 entries holds
// about 100 MiB): a limit under the live heap would make the collector
// run all the time.
func memoryLimit(budget, live int64) int64 {
	return max(budget+MemoryOverhead, 2*live)
}

// buffersIdle is how long a worker serves no large read before it hands
// back the I/O buffers it keeps for the next (mmapbuf.ReleaseIdle, up to
// 12 MiB) and the free pages of its heap: a node runs a worker per image,
// most of them idle.
const buffersIdle = 5 * time.Second

// RunMemoryUpkeep keeps the Go runtime's soft memory limit at memoryLimit
// of the tier's budget and the live heap until ctx ends (GOMEMLIMIT in the
// environment takes precedence), and hands idle I/O buffers back.
func RunMemoryUpkeep(ctx context.Context, budget int64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	limit := os.Getenv("GOMEMLIMIT") == ""
	if !limit {
		log.G(ctx).Info("GOMEMLIMIT set: the worker's memory limit is left to it")
	}
	set := func() {
		if mmapbuf.ReleaseIdle(buffersIdle) > 0 {
			// The worker just went idle after reading: the heap pages
			// its reads left free go back to the kernel now, not when
			// the scavenger gets to them (it keeps about a third of
			// the heap for the next burst).
			debug.FreeOSMemory()
		}
		if !limit {
			return
		}
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		debug.SetMemoryLimit(memoryLimit(budget, live))
	}
	set()
	t := time.NewTicker(memoryLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			set()
		}
	}
}
