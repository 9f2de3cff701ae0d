package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/faultproxy"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// startFaultProxy starts a fault-injecting proxy in front of the stack's
// registry, closed when t ends. It injects nothing until told to.
func startFaultProxy(t *testing.T, s *stack, opts faultproxy.Options) *faultproxy.Proxy {
	t.Helper()
	opts.Upstream = s.reg.Addr()
	p, err := faultproxy.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close fault proxy: %v", err)
		}
	})
	return p
}

// TestRegistryFaults pulls the eStargz image lazily through a
// fault-injecting proxy and then runs a container that checksums every
// file while the proxy resets connections, answers 5xx and 429, stalls,
// truncates, lengthens and corrupts blob answers and redirects blob GETs
// to a second address: every file must read right, with no error, and
// the snapshotter's /metrics must show the worker's registry requests and hedges.
func TestRegistryFaults(t *testing.T) {
	s := startStack(t, harness.V2)
	proxy := startFaultProxy(t, s, faultproxy.Options{Seed: 12, Redirect: true})
	img := s.convertToEStargz(t, proxy.Addr())
	s.pullLazily(t, img)

	// Every class once, scripted (the first reads meet them in a row),
	// then at random: the image takes a few dozen requests to read.
	proxy.Script(faultproxy.Reset, faultproxy.ServerError, faultproxy.TooMany, faultproxy.Stall,
		faultproxy.Truncate, faultproxy.Lengthen, faultproxy.Flip, faultproxy.Reset)
	proxy.SetFaults(faultproxy.Faults{
		Reset: 0.15, Status5xx: 0.08, TooMany: 0.04, Stall: 0.08, StallFor: 2 * time.Second,
		Truncate: 0.08, Lengthen: 0.04, Flip: 0.02,
	})
	start := time.Now()
	s.runChecksOf(t, img.ref, "registry-faults")
	c := proxy.Counters()
	t.Logf("container verified every file in %v through the faulty proxy: %+v", time.Since(start).Round(time.Millisecond), c)
	proxy.SetFaults(faultproxy.Faults{})

	for name, n := range map[string]int64{
		"resets": c.Resets, "5xx": c.Status5xx, "429s": c.TooMany, "stalls": c.Stalls, "truncated bodies": c.Truncated,
		"long bodies": c.Lengthened, "flipped bytes": c.Flipped, "redirected requests": c.Redirected,
	} {
		if n == 0 {
			t.Errorf("the proxy injected no %s: the run proves nothing about them (%+v)", name, c)
		}
	}

	// The snapshotter collects worker series as it scrapes them: polled.
	waitFor(t, 10*time.Second, "the snapshotter's /metrics shows the worker's registry series", func() (bool, string) {
		page := httpGet(t, "http://"+s.snap.DebugAddr()+"/metrics")
		// Only what the script makes certain: net/http itself resends a
		// GET whose reused connection was reset before any answer, a
		// failure of a cached redirect target is answered within the
		// same attempt by asking the registry again, and a bad body on
		// a hedge that loses is no retry. The unit tests of remote cover
		// each cause on its own.
		for _, m := range []struct{ name, label, value string }{
			{"lazyfs_registry_hedges_fired_total", "registry", proxy.Addr()},
			{"lazyfs_registry_requests_total", "outcome", "ok"},
			{"lazyfs_registry_bytes_total", "registry", proxy.Addr()},
		} {
			if got, ok := metricValue(t, page, m.name, map[string]string{m.label: m.value}); !ok || got < 1 {
				return false, fmt.Sprintf("%s{%s=%q} = %v (present: %v), want >= 1", m.name, m.label, m.value, got, ok)
			}
		}
		return true, ""
	})
}
