package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNewDist(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := NewDist(ds)
	want := Dist{N: 100, Median: 50 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("NewDist(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := NewDist(nil); got != (Dist{}) {
		t.Errorf("NewDist(nil) = %+v, want zero", got)
	}
}

// TestAnalyze places ops around one kill: one blocked across it, one
// inside the margin after the successor served, one far away.
func TestAnalyze(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	op := func(startMs, durMs int) OpRecord {
		return OpRecord{Start: at(startMs), Duration: time.Duration(durMs) * time.Millisecond, Op: OpRead}
	}
	ops := []OpRecord{
		op(0, 1),     // baseline
		op(500, 1),   // baseline
		op(995, 12),  // blocked across the kill at 1000
		op(1030, 2),  // after serving (1010), within the 50 ms margin
		op(1200, 1),  // baseline
		op(2000, 30), // overlaps the quiet window: neither
	}
	kills := []Kill{{At: at(1000), Served: at(1010)}}
	quiet := [][2]time.Time{{at(2010), at(2020)}}
	rep := Analyze([][]OpRecord{ops}, kills, quiet, 50*time.Millisecond)
	if rep.PerKill != (Dist{N: 1, Median: 12 * time.Millisecond, P99: 12 * time.Millisecond, Max: 12 * time.Millisecond}) {
		t.Errorf("PerKill = %+v, want the 12 ms op", rep.PerKill)
	}
	if rep.InWindows.N != 2 || rep.Baseline.N != 3 || rep.Baseline.Max != time.Millisecond {
		t.Errorf("InWindows = %+v (want 2 ops), Baseline = %+v (want 3 ops of 1 ms)", rep.InWindows, rep.Baseline)
	}
	if rep.DeathToServing.Max != 10*time.Millisecond {
		t.Errorf("DeathToServing = %+v, want 10 ms", rep.DeathToServing)
	}
}

func TestOpRecordRoundTrip(t *testing.T) {
	want := []OpRecord{
		{Start: time.Unix(5, 123456789), Duration: 1500 * time.Microsecond, Op: OpPread, Result: ResultOK},
		{Start: time.Unix(6, 0), Duration: 7 * time.Second, Op: OpReaddir, Result: ResultError},
	}
	var b []byte
	for _, r := range want {
		b = AppendOpRecord(b, r)
	}
	// A torn last record, as a reader killed mid-write leaves.
	b = append(b, 1, 2, 3)
	p := filepath.Join(t.TempDir(), OpsFile)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadOpRecords(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || got[i].Duration != want[i].Duration || got[i].Op != want[i].Op || got[i].Result != want[i].Result {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
