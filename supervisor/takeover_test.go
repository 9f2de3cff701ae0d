package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testregistry"
)

// takeoverBound is how soon a dead worker's mounts must be served again by
// its successor; it leaves room for a loaded machine (it takes milliseconds).
const takeoverBound = 10 * time.Second

// reader reads a file of a mount again and again, dropping the page cache
// before each read so that every read reaches the worker, and records the
// first error or wrong byte.
type reader struct {
	reads atomic.Int64
	stopF atomic.Bool
	done  chan struct{}
	mu    sync.Mutex
	err   error
}

func startReader(t *testing.T, path string, want []byte) *reader {
	t.Helper()
	r := &reader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for !r.stopF.Load() {
			got, err := fusetest.ReadFileUncached(path)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("%s: %d bytes differ from the layer's %d", path, len(got), len(want))
			}
			if err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			r.reads.Add(1)
		}
	}()
	t.Cleanup(func() { r.stopF.Store(true) })
	return r
}

func (r *reader) error() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// waitReads waits until the reader has done n reads, failing on its error.
func (r *reader) waitReads(t *testing.T, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d reads", n), func() bool {
		if err := r.error(); err != nil {
			t.Fatalf("reader: %v", err)
		}
		return r.reads.Load() >= n
	})
}

// stop ends the reader and fails on its error.
func (r *reader) stop(t *testing.T) {
	t.Helper()
	r.stopF.Store(true)
	select {
	case <-r.done:
	case <-time.After(testTimeout):
		t.Fatal("reader hangs")
	}
	if err := r.error(); err != nil {
		t.Fatalf("reader: %v", err)
	}
}

// waitSuccessor waits until worker id runs with a pid other than old and
// serves mount, and returns its pid.
func (s *testSupervisor) waitSuccessor(t *testing.T, id string, old int, mount string) int {
	t.Helper()
	var pid int
	eventually(t, fmt.Sprintf("worker %s replaced", id), func() bool {
		pid = s.pids()[id]
		rec, ok := s.records()[id]
		_, has := rec.Mounts[mount]
		return pid != 0 && pid != old && ok && rec.PID == pid && has
	})
	return pid
}

func TestKilledWorkerIsTakenOver(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t, PerImage)
			s := e.supervisor()
			mp := e.mountpoint("m1")
			s.mount("m1", mp, e.layer(0, "v1"))
			id := e.workerID("v1")
			old := s.pids()[id]
			if rec := s.records()[id].Mounts["m1"]; rec.Init.Check() != nil {
				t.Fatalf("workers.db keeps no INIT state for m1: %v", rec.Init.Check())
			}
			big := e.layers[0].Files["usr/bin/big.bin"]

			// A reader blocked in a read the worker is fetching from
			// the (held) registry, and one with a file open.
			idle := -1
			within(t, "open a file", func() {
				var err error
				if idle, err = unix.Open(filepath.Join(mp, "usr/share/a.conf"), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
					t.Error(err)
				}
			})
			if t.Failed() {
				t.FailNow()
			}
			defer unix.Close(idle)
			e.reg.Hold()
			type result struct {
				data []byte
				err  error
			}
			blocked := make(chan result, 1)
			go func() {
				data, err := fusetest.ReadFile(filepath.Join(mp, "usr/bin/big.bin"))
				blocked <- result{data, err}
			}()
			select {
			case <-e.reg.Stalled():
			case r := <-blocked:
				t.Fatalf("read finished (%v) while the registry holds every request", r.err)
			case <-time.After(testTimeout):
				t.Fatal("the worker never asked the registry for the file")
			}

			killed := time.Now()
			if err := e.kill(old, sig); err != nil {
				t.Fatal(err)
			}
			pid := s.waitSuccessor(t, id, old, "m1")
			if d := time.Since(killed); d > takeoverBound {
				t.Errorf("successor served %v after the worker died, want within %v", d, takeoverBound)
			}
			e.reg.Release()
			select {
			case r := <-blocked:
				if r.err != nil || !bytes.Equal(r.data, big) {
					t.Errorf("read in flight when the worker died: %d bytes, %v; want the file's %d bytes", len(r.data), r.err, len(big))
				}
			case <-time.After(testTimeout):
				t.Fatal("read in flight when the worker died still hangs after the takeover")
			}
			within(t, "read a file opened before the death", func() {
				got, err := fusetest.ReadFD(idle)
				if err != nil || !bytes.Equal(got, e.layers[0].Files["usr/share/a.conf"]) {
					t.Errorf("read of a file opened before the death: %d bytes, %v", len(got), err)
				}
			})
			if n := len(mountEntries(t, mp)); n != 1 {
				t.Errorf("%d mounts at %s, want the one mount, served again", n, mp)
			}
			if pid == old {
				t.Errorf("worker %s still has pid %d", id, pid)
			}
			wantCause := map[syscall.Signal]string{syscall.SIGKILL: "killed", syscall.SIGQUIT: "exit"}[sig]
			if st := s.stateOf(t, id); st.State != StateServing || st.PID != pid || st.Restarts != 1 || st.LastExit == nil || st.LastExit.Cause != wantCause || st.LastExit.Expected || len(st.Mounts) != 1 {
				t.Errorf("state of %s after the takeover: %+v; want serving pid %d, 1 restart, last exit %q, 1 mount", id, st, pid, wantCause)
			}
			testregistry.CheckFiles(t, testTimeout, mp, e.layers[0])
		})
	}
}

func TestTakeoverUnderReadersInBothModes(t *testing.T) {
	for _, mode := range []Mode{PerImage, Shared} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, mode)
			s := e.supervisor()
			mp1, mp2 := e.mountpoint("m1"), e.mountpoint("m2")
			s.mount("m1", mp1, e.layer(0, "v1"))
			s.mount("m2", mp2, e.layer(1, "v2"))
			r1 := startReader(t, filepath.Join(mp1, "usr/bin/big.bin"), e.layers[0].Files["usr/bin/big.bin"])
			r2 := startReader(t, filepath.Join(mp2, "usr/share/a.conf"), e.layers[1].Files["usr/share/a.conf"])
			r1.waitReads(t, 3)
			r2.waitReads(t, 3)
			id := e.workerID("v1")
			if mode == Shared {
				id = "shared"
			}
			for range 3 {
				old := s.pids()[id]
				n1, n2 := r1.reads.Load(), r2.reads.Load()
				if err := e.kill(old, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				s.waitSuccessor(t, id, old, "m1")
				r1.waitReads(t, n1+3)
				r2.waitReads(t, n2+3)
			}
			r1.stop(t)
			r2.stop(t)
		})
	}
}

func TestKilledAfterSupervisorRestartIsTakenOver(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]
	s.close(true)

	// The next supervisor re-adopts the worker and collects copies of
	// its connections: a later death of the worker is a takeover too.
	s2 := e.supervisor()
	if got := s2.pids()[id]; got != old {
		t.Fatalf("worker %s re-adopted with pid %d, want %d", id, got, old)
	}
	r := startReader(t, filepath.Join(mp, "usr/bin/big.bin"), e.layers[0].Files["usr/bin/big.bin"])
	r.waitReads(t, 3)
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n := r.reads.Load()
	s2.waitSuccessor(t, id, old, "m1")
	r.waitReads(t, n+3)
	r.stop(t)
}

func TestReplaceUnderReader(t *testing.T) {
	e := newEnv(t, PerImage)
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	r := startReader(t, filepath.Join(mp, "usr/bin/big.bin"), e.layers[0].Files["usr/bin/big.bin"])
	r.waitReads(t, 3)
	// A planned replacement may be an upgrade: it runs the binary as it
	// is now, never the standby started from the old one.
	var standby int
	eventually(t, "a standby is started", func() bool {
		standby = s.standbyPID()
		return standby != 0
	})
	for range 3 {
		old := s.pids()[id]
		n := r.reads.Load()
		ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
		pid, err := s.Replace(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("Replace: %v", err)
		}
		if pid == old || s.pids()[id] != pid {
			t.Fatalf("Replace returned pid %d; workers %v; old pid %d", pid, s.pids(), old)
		}
		if pid == standby || s.standbyPID() != standby {
			t.Fatalf("Replace used the standby %d (now %d): pid %d", standby, s.standbyPID(), pid)
		}
		waitGone(t, old)
		r.waitReads(t, n+3)
	}
	r.stop(t)
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if _, err := s.Replace(ctx, "img-nosuchworker"); err == nil {
		t.Error("Replace of an unknown worker succeeded")
	}
}

// TestCrashLoopGivesUp: a worker that keeps dying right after it takes its
// mounts over is given up: its readers get an error (never hang), its
// mounts are detached and Wait reports them failed.
func TestCrashLoopGivesUp(t *testing.T) {
	e := newEnv(t, PerImage)
	e.opts.CrashLoopCount = 2
	e.opts.CrashLoopWindow = time.Hour
	e.opts.RestartBackoff = time.Millisecond
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	for i := range 2 {
		old := s.pids()[id]
		if err := e.kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			s.waitSuccessor(t, id, old, "m1")
		}
	}
	eventually(t, "mount given up and detached", func() bool { return !mounted(t, mp) })
	if st := s.stateOf(t, id); st.State != StateFailed || st.Restarts != 1 || st.LastExit == nil {
		t.Errorf("state of a given-up worker: %+v, want failed after 1 restart, with its last exit", st)
	}
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := s.Wait(ctx, []string{"m1"}); err == nil {
		t.Fatal("Wait on a given-up mount succeeded")
	}
	if _, ok := s.pids()[id]; ok {
		t.Errorf("given-up worker %s still registered", id)
	}
}

// fdStoreStandIn speaks the part of systemd's sd_notify protocol lazyfs uses:
// it keeps the fds sent with FDSTORE=1 by FDNAME, drops them on
// FDSTOREREMOVE=1, and hands them to the next start as LISTEN_FDS would.
type fdStoreStandIn struct {
	conn *net.UnixConn
	path string
	mu   sync.Mutex
	fds  map[string][]int
}

func newFDStoreStandIn(t *testing.T) *fdStoreStandIn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	st := &fdStoreStandIn{conn: conn, path: path, fds: map[string][]int{}}
	go st.serve()
	t.Cleanup(func() {
		conn.Close()
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, fds := range st.fds {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	})
	return st
}

func (st *fdStoreStandIn) serve() {
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := st.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var fds []int
		if scms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, scm := range scms {
				got, _ := unix.ParseUnixRights(&scm)
				fds = append(fds, got...)
			}
		}
		vars := map[string]string{}
		for _, line := range bytes.Split(buf[:n], []byte("\n")) {
			if k, v, ok := bytes.Cut(line, []byte("=")); ok {
				vars[string(k)] = string(v)
			}
		}
		st.mu.Lock()
		name := vars["FDNAME"]
		switch {
		case vars["FDSTORE"] == "1":
			st.fds[name] = append(st.fds[name], fds...)
		case vars["FDSTOREREMOVE"] == "1":
			for _, fd := range st.fds[name] {
				unix.Close(fd)
			}
			delete(st.fds, name)
		}
		st.mu.Unlock()
	}
}

// handBack returns duplicates of the stored fds, as the next start gets them.
func (st *fdStoreStandIn) handBack(t *testing.T) map[string][]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := map[string][]int{}
	for name, fds := range st.fds {
		for _, fd := range fds {
			dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = append(out[name], dup)
		}
	}
	return out
}

// TestFDStoreKeepsConnectionsWhenSnapshotterAndWorkerDie: the supervisor
// and its worker die together; the fd store kept the connection, and the
// next supervisor takes it over from there: the reader only waits.
func TestFDStoreKeepsConnectionsWhenSnapshotterAndWorkerDie(t *testing.T) {
	e := newEnv(t, PerImage)
	store := newFDStoreStandIn(t)
	t.Setenv("NOTIFY_SOCKET", store.path)
	e.opts.FDStore = failover.NewFDStore()
	s := e.supervisor()
	mp := e.mountpoint("m1")
	s.mount("m1", mp, e.layer(0, "v1"))
	id := e.workerID("v1")
	old := s.pids()[id]
	eventually(t, "fd kept in the store", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return len(store.fds[failover.MountFDName("m1")]) == 1
	})
	r := startReader(t, filepath.Join(mp, "usr/bin/big.bin"), e.layers[0].Files["usr/bin/big.bin"])
	r.waitReads(t, 3)

	// The snapshotter "dies" (its fd copies go with it) and so does the
	// worker: only the fd store holds the connection now.
	s.close(true)
	if err := e.kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, old)
	n := r.reads.Load()

	e.opts.StoredFDs = store.handBack(t)
	s2 := e.supervisor()
	s2.waitSuccessor(t, id, old, "m1")
	r.waitReads(t, n+3)
	r.stop(t)

	// Unmounting removes the connection from the store.
	s2.unmount("m1", mp)
	store.mu.Lock()
	left := len(store.fds)
	store.mu.Unlock()
	if left != 0 {
		t.Errorf("fd store keeps %d names after the last unmount", left)
	}
}

// stateOf returns worker id's status.
func (s *testSupervisor) stateOf(t *testing.T, id string) WorkerStatus {
	t.Helper()
	for _, st := range s.WorkerList() {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("no status for worker %s in %+v", id, s.WorkerList())
	return WorkerStatus{}
}
