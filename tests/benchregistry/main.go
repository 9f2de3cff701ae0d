// Command benchregistry is `make bench-registry`: it measures how remote
// rides out registry faults, against a no-fault baseline measured in the
// same run, and prints medians and ratios.
//
// A loopback origin serves one random blob (HEAD and Range); the
// fault-injecting proxy (internal/faultproxy) stands in front of it. One
// run reads the whole blob in chunk-sized ranges from several readers
// through the scenario's remote.Resolver (one per scenario, as a worker
// keeps one for its life), each range checked against the blob's bytes
// the way chunks checks digests (remote.Blob.ReadAtVerified). The
// scenarios take turns, one run each, so that the load of a shared
// machine weighs on all of them alike. Besides medians and ratios it
// prints remote's own counters per scenario (retries, hedges fired,
// circuit breaker opens): where the time went. Scenarios:
//
//	baseline       no faults
//	resets+5xx     30 % connection resets + 10 % 503
//	stalls         20 % of requests stalled 2 s
//	truncated      10 % truncated bodies
//	flipped        5 % of answers with a flipped byte
//	down           the registry down for -down (60 s), readers reading all
//	               along: requests sent while down, and the time from its
//	               return to the first successful read
//
// Usage: go run ./tests/benchregistry [-runs 20] [-size 33554432] [-down 60s] [-latency 20ms]
//
// On loopback (-latency 0) a read costs a few milliseconds, so one extra
// round trip is a large ratio; -latency 20ms emulates a registry across a
// network (E2E-NOTES.md's emulated remote registry adds 20 ms per request).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/remote"
)

func main() {
	runs := flag.Int("runs", 20, "runs per scenario")
	size := flag.Int("size", 32<<20, "blob size in bytes")
	chunk := flag.Int("chunk", 1<<20, "bytes per read (a merged chunk group)")
	readers := flag.Int("readers", 4, "parallel readers")
	down := flag.Duration("down", 60*time.Second, "outage of the down scenario (0: skip it)")
	latency := flag.Duration("latency", 0, "latency the proxy adds to every request (emulates a remote registry)")
	flag.Parse()
	_ = log.SetLevel("fatal")
	if err := run(*runs, *size, *chunk, *readers, *down, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
}

type bench struct {
	blob    []byte
	dgst    digest.Digest
	proxy   *faultproxy.Proxy
	chunk   int
	readers int
}

func run(runs, size, chunk, readers int, down, latency time.Duration) error {
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	dgst := digest.FromBytes(blob)
	origin, err := serveBlob(blob, dgst)
	if err != nil {
		return err
	}
	proxy, err := faultproxy.Start(faultproxy.Options{Upstream: origin, Seed: 2026, Latency: latency})
	if err != nil {
		return err
	}
	defer proxy.Close()
	b := &bench{blob: blob, dgst: dgst, proxy: proxy, chunk: chunk, readers: readers}

	fmt.Printf("blob %d MiB, reads of %d KiB, %d readers, %d runs per scenario, %s added per request\n\n", size>>20, chunk>>10, readers, runs, latency)
	fmt.Printf("%-12s %10s %10s %8s %8s %8s %10s %8s %8s %6s\n", "scenario", "median", "max", "ratio", "errors", "wrong", "requests", "retries", "hedges", "opens")
	type scenario struct {
		name   string
		faults faultproxy.Faults
		// One resolver per scenario, as a worker keeps one for its
		// life: the first run starts without latency history (hedges
		// wait HedgeMax), later ones have it.
		r           *remote.Resolver
		times       []time.Duration
		errs, wrong int
		requests    int64
		remote      remoteCounts
	}
	scenarios := []*scenario{
		{name: "baseline", faults: faultproxy.Faults{}},
		{name: "resets+5xx", faults: faultproxy.Faults{Reset: 0.3, Status5xx: 0.1}},
		{name: "stalls", faults: faultproxy.Faults{Stall: 0.2, StallFor: 2 * time.Second}},
		{name: "truncated", faults: faultproxy.Faults{Truncate: 0.1}},
		{name: "flipped", faults: faultproxy.Faults{Flip: 0.05}},
	}
	for _, sc := range scenarios {
		sc.r = remote.NewResolver(remote.Options{})
	}
	// The scenarios take turns, one run each, so that a machine whose
	// load changes over the minutes of a benchmark (other builds, other
	// tests) weighs on every scenario alike, not on the ones that happen
	// to run while it is busy: the ratios compare like with like.
	for range runs {
		for _, sc := range scenarios {
			proxy.SetFaults(sc.faults)
			before, m0 := proxy.Counters().Requests, counts()
			d, e, w := b.readOnce(sc.r)
			sc.times = append(sc.times, d)
			sc.errs += e
			sc.wrong += w
			sc.requests += proxy.Counters().Requests - before
			sc.remote = sc.remote.plus(counts().minus(m0))
		}
	}
	var base time.Duration
	for _, sc := range scenarios {
		slices.Sort(sc.times)
		med := sc.times[len(sc.times)/2]
		if sc.name == "baseline" {
			base = med
		}
		m := sc.remote
		fmt.Printf("%-12s %10s %10s %7.2fx %8d %8d %10d %8d %8d %6d\n", sc.name, med.Round(time.Millisecond), sc.times[len(sc.times)-1].Round(time.Millisecond),
			float64(med)/float64(base), sc.errs, sc.wrong, sc.requests, m.retries, m.hedges, m.opens)
	}
	proxy.SetFaults(faultproxy.Faults{})
	if down > 0 {
		return b.outage(down)
	}
	return nil
}

// readOnce reads the whole blob once through r and returns the time it
// took, the reads that failed and the reads with wrong bytes.
func (b *bench) readOnce(r *remote.Resolver) (time.Duration, int, int) {
	blob, err := r.Blob(context.Background(), b.proxy.Addr()+"/bench/blob:latest", b.dgst)
	if err != nil {
		return 0, len(b.blob) / b.chunk, 0
	}
	var next atomic.Int64
	var errs, wrong atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range b.readers {
		wg.Go(func() {
			buf := make([]byte, b.chunk)
			for {
				off := next.Add(int64(b.chunk)) - int64(b.chunk)
				if off >= int64(len(b.blob)) {
					return
				}
				want := b.blob[off:min(off+int64(b.chunk), int64(len(b.blob)))]
				n, err := blob.ReadAtVerified(context.Background(), buf[:len(want)], off, func(got []byte) error {
					if !bytes.Equal(got, want) {
						return errors.New("digest mismatch")
					}
					return nil
				})
				switch {
				case err != nil && n == 0:
					errs.Add(1)
				case !bytes.Equal(buf[:n], want):
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), int(errs.Load()), int(wrong.Load())
}

// outage keeps 4 readers reading while the registry is down for d, counts
// the requests that reach it meanwhile, and measures how long after its
// return the first read succeeds.
func (b *bench) outage(d time.Duration) error {
	r := remote.NewResolver(remote.Options{})
	blob, err := r.Blob(context.Background(), b.proxy.Addr()+"/bench/blob:latest", b.dgst)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var upAt atomic.Int64 // unix nanos of the registry's return, 0 while down
	firstOK := make(chan time.Time, 1)
	b.proxy.SetDown(true)
	before := b.proxy.Counters().Requests
	var wg sync.WaitGroup
	for i := range b.readers {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for ctx.Err() == nil {
				_, err := blob.ReadAt(ctx, buf, int64(i*4096))
				if err == nil && upAt.Load() != 0 {
					select {
					case firstOK <- time.Now():
					default:
					}
					return
				}
			}
		})
	}
	time.Sleep(d)
	sent := b.proxy.Counters().Requests - before
	up := time.Now()
	upAt.Store(up.UnixNano())
	b.proxy.SetDown(false)
	var recovered time.Duration
	select {
	case at := <-firstOK:
		recovered = at.Sub(up)
	case <-time.After(30 * time.Second):
		recovered = -1
	}
	cancel()
	wg.Wait()
	fmt.Printf("\ndown %s: %d requests sent while down; first read succeeded %s after its return\n", d, sent, recovered.Round(time.Millisecond))
	return nil
}

// serveBlob serves blob (HEAD and Range) as /v2/bench/blob/blobs/<dgst> on
// a free loopback port and returns the address.
func serveBlob(blob []byte, dgst digest.Digest) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	path := "/v2/bench/blob/blobs/" + dgst.String()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == path:
			w.Header().Set("Docker-Content-Digest", dgst.String())
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
		default:
			http.NotFound(w, r)
		}
	}))
	return strings.TrimSpace(ln.Addr().String()), nil
}

// remoteCounts are remote's own counters (metrics.Registry), summed over
// hosts: why a scenario cost what it did.
type remoteCounts struct{ retries, hedges, opens int }

func counts() remoteCounts {
	var c remoteCounts
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		return c
	}
	for _, mf := range mfs {
		var dst *int
		switch mf.GetName() {
		case "lazyfs_registry_retries_total":
			dst = &c.retries
		case "lazyfs_registry_hedges_fired_total":
			dst = &c.hedges
		case "lazyfs_registry_circuit_opens_total":
			dst = &c.opens
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += int(m.GetCounter().GetValue())
		}
	}
	return c
}

func (c remoteCounts) minus(o remoteCounts) remoteCounts {
	return remoteCounts{c.retries - o.retries, c.hedges - o.hedges, c.opens - o.opens}
}

func (c remoteCounts) plus(o remoteCounts) remoteCounts {
	return remoteCounts{c.retries + o.retries, c.hedges + o.hedges, c.opens + o.opens}
}
