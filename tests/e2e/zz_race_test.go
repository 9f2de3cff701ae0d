package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/tests/harness"
)

func TestZZRace(t *testing.T) {
	s := startStack(t, harness.V2)
	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	ctx := context.Background()
	for i := range 6 {
		w := onlyWorker(t, s.snap)
		s.snap.Kill()
		killProcess(t, w.PID)
		if err := s.snap.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := s.ctrd.CtrRun(ctx, "--snapshotter", "lazyfs", "--rm", img.ref, fmt.Sprintf("race-%d", i), "sh", "-c", "ls /data/size | wc -l; cat /etc/hostname")
		t.Logf("iteration %d after %v: out=%q err=%v mounts=%v", i, time.Since(start), out, err, fuseMounts(t, s.snap))
		time.Sleep(2 * time.Second)
		t.Logf("after 2s: mounts=%v workers=%+v", fuseMounts(t, s.snap), liveWorkers(t, s.snap))
	}
}
