package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lazyfs/lazyfs/metrics"
	"github.com/lazyfs/lazyfs/supervisor"
)

// statusInterval is how often STATUS= is refreshed without a watchdog.
const statusInterval = 15 * time.Second

// notify tells systemd about a state change; outside systemd it does nothing.
func notify(ctx context.Context, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("state", state).Warn("failed to notify systemd")
	}
}

// watchSystemd keeps systemd's STATUS= line current and, when the unit sets
// WatchdogSec=, pings the watchdog at half its interval. Each ping follows a
// status read that takes the supervisor's locks: a snapshotter deadlocked
// there misses its pings and systemd restarts it (KillMode=process: the
// workers keep serving and are re-adopted). Outside systemd it does
// nothing. stop ends it and waits.
func watchSystemd(ctx context.Context, status func() string) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.G(ctx).WithError(err).Warn("ignoring a malformed systemd watchdog setting")
	}
	tick, ping := statusInterval, interval > 0
	if ping {
		tick = interval / 2
		log.G(ctx).WithField("interval", interval).Info("pinging the systemd watchdog")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			state := "STATUS=" + status()
			if ping {
				state = "WATCHDOG=1\n" + state
			}
			notify(ctx, state)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// statusLine says what an operator sees in `systemctl status`: workers,
// layers and failures since the start.
func statusLine(sup *supervisor.Supervisor) string {
	st := sup.Status()
	failovers, givenUp := counterSum(metrics.Registry, "lazyfs_failovers_total"), counterSum(metrics.Registry, "lazyfs_failovers_given_up_total")
	return fmt.Sprintf("serving %d lazy layers with %d workers; %d worker failovers, %d given up", st.Mounts, st.Workers, failovers, givenUp)
}

// counterSum adds up every series of a counter family; 0 when absent.
func counterSum(g prometheus.Gatherer, name string) int {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return int(sum)
}
