package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logHas tells whether worker id's log file contains s.
func (e *env) logHas(id, s string) bool {
	data, err := os.ReadFile(filepath.Join(e.opts.LogDir, "daemons", id+".log"))
	return err == nil && strings.Contains(string(data), s)
}

// TestHungWorkerIsReplaced: a worker that stops answering (SIGSTOP) is
// found hung by its health checks, leaves a goroutine dump in its log, and
// its mount fails over: the reader only waits.
func TestHungWorkerIsReplaced(t *testing.T) {
	e := newEnv(t, PerImage)
	e.opts.HealthInterval = 50 * time.Millisecond
	e.opts.HungTimeout = 100 * time.Millisecond
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]
	r := startReader(t, filepath.Join(mp, "usr/bin/big.bin"), e.layers[0].Files["usr/bin/big.bin"])
	r.waitReads(t, 3)
	if e.logHas(id, "SIGQUIT") {
		t.Fatal("test setup: the log has a SIGQUIT dump already")
	}

	if err := e.kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	n := r.reads.Load()
	s.waitSuccessor(t, id, old, "m1")
	r.waitReads(t, n+3)
	r.stop(t)
	eventually(t, "goroutine dump of the hung worker in its log", func() bool {
		return e.logHas(id, "SIGQUIT") && e.logHas(id, "goroutine ")
	})
}

// TestReadoptedWorkerLogsReachItsFile: the pipe a worker was started with
// dies with the supervisor that spawned it; the next one hands it a new one,
// so that what the worker writes later (here the goroutine dump of a
// SIGQUIT) still reaches its log file.
func TestReadoptedWorkerLogsReachItsFile(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]
	s.close(true)

	s2 := e.supervisor()
	if s2.pids()[id] != old {
		t.Fatalf("worker %s not re-adopted", id)
	}
	if e.logHas(id, "SIGQUIT") {
		t.Fatal("test setup: the log has a SIGQUIT dump already")
	}
	if err := e.kill(old, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	s2.waitSuccessor(t, id, old, "m1")
	eventually(t, "SIGQUIT dump of the re-adopted worker in its log", func() bool {
		return e.logHas(id, "SIGQUIT") && e.logHas(id, "goroutine ")
	})
}
