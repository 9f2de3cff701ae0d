package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSnapshotterEnv returns an Env whose bin/lazyfs-snapshotter runs this
// test binary as the fake snapshotter of process_test.go, with extra
// environment variables (FAKE_EXIT_CODE, FAKE_IGNORE_TERM, FAKE_FAIL).
func fakeSnapshotterEnv(t *testing.T, vars ...string) Env {
	t.Helper()
	env := Env{BinDir: t.TempDir()}
	script := fmt.Sprintf("#!/bin/sh\nexport %s=fake-snapshotter %s\nexec %q -test.run='^TestHelperProcess$' -- \"$@\"\n",
		helperEnv, strings.Join(vars, " "), os.Args[0])
	if err := os.WriteFile(env.SnapshotterBin(), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return env
}

func dialable(addr string) bool {
	conn, err := net.DialTimeout("unix", addr, time.Second)
	if err == nil {
		conn.Close()
	}
	return err == nil
}

func TestSnapshotterLifecycle(t *testing.T) {
	RequireRoot(t) // the fake mounts a tmpfs, as the real one mounts FUSE
	ctx := context.Background()
	s, err := StartSnapshotter(ctx, SnapshotterOptions{
		Env:    fakeSnapshotterEnv(t, "FAKE_EXIT_CODE=0"),
		Config: map[string]any{"workers": map[string]any{"mode": "shared"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	Track(t, s)

	for _, p := range []string{s.Address(), s.Root(), s.RunDir(), s.LogDir()} {
		if !strings.HasPrefix(p, s.BaseDir()+"/") {
			t.Errorf("%s is not under the base dir %s", p, s.BaseDir())
		}
	}
	if !dialable(s.Address()) {
		t.Fatalf("%s does not accept connections after start", s.Address())
	}
	cfg, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"root = '" + s.Root() + "'", "log_level = 'debug'", "[debug]", "address = '" + s.DebugAddr() + "'", "mode = 'shared'"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	logs := s.Logs()
	if len(logs) != 2 || !strings.HasSuffix(logs[1], "w1.log") {
		t.Errorf("Logs() = %v, want the snapshotter's and the worker's", logs)
	}

	firstPid := s.Pid()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Pid() == firstPid || !dialable(s.Address()) {
		t.Errorf("Restart: pid %d (was %d), dialable %v", s.Pid(), firstPid, dialable(s.Address()))
	}

	s.Kill()
	if code, inTime := s.Stop(); code != -1 || !inTime {
		t.Errorf("Stop after Kill = %d, %v; want -1 (killed), true", code, inTime)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if code, inTime := s.Stop(); code != 0 || !inTime {
		t.Errorf("Stop() = %d, %v; want 0, true", code, inTime)
	}

	// What the runs left behind (workers in their own sessions, a mount
	// under root) goes with Close.
	base := s.BaseDir()
	if pids, _ := processesUsing(base); len(pids) == 0 {
		t.Fatal("the fake left no worker: the test checks nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if pids, _ := processesUsing(base); len(pids) != 0 {
		t.Errorf("processes left after Close: %v", pids)
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("base dir %s left after Close: %v", base, err)
	}
}

func TestSnapshotterStopReportsExit(t *testing.T) {
	RequireRoot(t)
	for _, tc := range []struct {
		name       string
		vars       []string
		wantCode   int
		wantInTime bool
	}{
		{name: "exit 0", vars: []string{"FAKE_EXIT_CODE=0"}, wantCode: 0, wantInTime: true},
		{name: "exit 2", vars: []string{"FAKE_EXIT_CODE=2"}, wantCode: 2, wantInTime: true},
		{name: "hangs", vars: []string{"FAKE_IGNORE_TERM=1"}, wantCode: -1, wantInTime: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := StartSnapshotter(context.Background(), SnapshotterOptions{
				Env:         fakeSnapshotterEnv(t, tc.vars...),
				StopTimeout: 500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			Track(t, s)
			code, inTime := s.Stop()
			if code != tc.wantCode || inTime != tc.wantInTime {
				t.Errorf("Stop() = %d, %v; want %d, %v", code, inTime, tc.wantCode, tc.wantInTime)
			}
		})
	}
}

func TestSnapshotterStartFailureCarriesLog(t *testing.T) {
	_, err := StartSnapshotter(context.Background(), SnapshotterOptions{
		Env: fakeSnapshotterEnv(t, "FAKE_FAIL=bad-config-value"),
	})
	if err == nil {
		t.Fatal("StartSnapshotter succeeded with a snapshotter that exits")
	}
	if !strings.Contains(err.Error(), "bad-config-value") {
		t.Errorf("error %q does not carry the snapshotter's output", err)
	}
	if matches, _ := filepath.Glob("/tmp/lzs-*"); len(matches) > 0 {
		for _, m := range matches {
			if b, _ := os.ReadFile(filepath.Join(m, "snapshotter.log")); strings.Contains(string(b), "bad-config-value") {
				t.Errorf("base dir %s left after a failed start", m)
			}
		}
	}
}

func TestSnapshotterNeedsTheBinary(t *testing.T) {
	_, err := StartSnapshotter(context.Background(), SnapshotterOptions{Env: Env{BinDir: t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("StartSnapshotter without a binary: %v, want a hint to run make build", err)
	}
}
