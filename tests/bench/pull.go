package main

import (
	"context"
	"fmt"
	"time"
)

// pullResult is one "pull + first command" measurement.
type pullResult struct {
	Snapshotter string  `json:"snapshotter"`
	Ref         string  `json:"ref"`
	PullSeconds float64 `json:"pull_seconds"`
	RunSeconds  float64 `json:"run_seconds"`
	// TotalSeconds is from the start of the pull to the end of the command.
	TotalSeconds float64 `json:"total_seconds"`
	// RegistryBytes are the blob body bytes the registry served from the
	// start of the pull until the command finished.
	RegistryBytes int64 `json:"registry_bytes"`
	// RegistryRequests are the blob GET and HEAD requests the registry
	// answered in that time.
	RegistryRequests int `json:"registry_requests"`
}

// pullAndRun pulls ref with snapshotter and runs `true` in a container of
// it, as a node starting a pod on a cold image does.
func pullAndRun(ctx context.Context, st *stack, ref, snapshotter, id string) (pullResult, error) {
	if err := dropCaches(); err != nil {
		return pullResult{}, err
	}
	st.proxy.Reset()
	start := time.Now()
	if _, err := st.ctrd.Ctr(ctx, "image", "pull", "--plain-http", "--snapshotter", snapshotter, ref); err != nil {
		return pullResult{}, err
	}
	pulled := time.Now()
	if _, err := st.ctrd.CtrRun(ctx, "--rm", "--snapshotter", snapshotter, ref, id, firstCommand); err != nil {
		return pullResult{}, err
	}
	done := time.Now()
	r := pullResult{
		Snapshotter:  snapshotter,
		Ref:          ref,
		PullSeconds:  pulled.Sub(start).Seconds(),
		RunSeconds:   done.Sub(pulled).Seconds(),
		TotalSeconds: done.Sub(start).Seconds(),
	}
	// Counted once the command ended, for this image's blobs only: a
	// background proof of the other image still running on the same
	// registry is not this pull's. Requests still running (background
	// fetches of this image) are in, with their bytes so far.
	blobs, err := imageBlobs(ctx, st.cl, ref)
	if err != nil {
		return pullResult{}, err
	}
	for _, d := range blobs {
		r.RegistryBytes += st.proxy.BlobBytes(d)
		r.RegistryRequests += st.proxy.BlobRequests(d) + st.proxy.BlobHeads(d)
	}
	progress("    %-9s pull %s + run %s = %s, registry served %s in %d blob requests", snapshotter,
		seconds(r.PullSeconds), seconds(r.RunSeconds), seconds(r.TotalSeconds), mib(r.RegistryBytes), r.RegistryRequests)
	return r, nil
}

func seconds(s float64) string { return fmt.Sprintf("%.3f s", s) }

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
