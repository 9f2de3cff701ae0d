package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/tests/harness"
)

// notification is one sd_notify datagram and the pid that sent it.
type notification struct {
	pid   int32
	state string
}

// startNotifySocket stands in for systemd's notify socket (these machines
// have no systemd as PID 1). It asks the kernel for each sender's
// credentials, as systemd does for NotifyAccess=main: containerd, started
// by the same test, notifies too.
func startNotifySocket(t *testing.T) <-chan notification {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	out := make(chan notification, 1000)
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				close(out)
				return
			}
			var pid int32
			if scms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(scms) > 0 {
				if cred, err := unix.ParseUnixCredentials(&scms[0]); err == nil {
					pid = cred.Pid
				}
			}
			out <- notification{pid: pid, state: string(buf[:n])}
		}
	}()
	t.Setenv("NOTIFY_SOCKET", path)
	return out
}

// nextFrom returns the next state pid sent that contains want, failing the
// test after timeout.
func nextFrom(t *testing.T, msgs <-chan notification, pid int, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case m := <-msgs:
			if int(m.pid) != pid {
				continue
			}
			if strings.Contains(m.state, want) {
				return m.state
			}
			seen = append(seen, m.state)
		case <-deadline:
			t.Fatalf("no notification with %q from pid %d within %v; it sent %q", want, pid, timeout, seen)
			return ""
		}
	}
}

// TestSystemdNotify runs the snapshotter as systemd would with Type=notify
// and WatchdogSec: READY=1 comes once containerd can reach it, STATUS=
// counts its workers and layers, the watchdog is pinged, and SIGTERM sends
// STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	msgs := startNotifySocket(t)
	// A 400ms watchdog: pings every 200ms.
	t.Setenv("WATCHDOG_USEC", "400000")
	s := startStackWith(t, harness.V2, harness.SnapshotterOptions{Env: env, StopTimeout: stopDeadline})
	pid := s.snap.Pid()

	ready := nextFrom(t, msgs, pid, "READY=1", 10*time.Second)
	if !strings.Contains(ready, "STATUS=serving 0 lazy layers with 0 workers") {
		t.Errorf("READY=1 came with %q, want a STATUS= line", ready)
	}
	// READY=1 is sent once the socket listens: containerd ordered after the
	// unit may dial at once.
	if c, err := net.Dial("unix", s.snap.Address()); err != nil {
		t.Errorf("snapshotter socket after READY=1: %v", err)
	} else {
		c.Close()
	}

	img := s.convertToEStargz(t, "")
	s.pullLazily(t, img)
	want := "WATCHDOG=1\nSTATUS=serving 3 lazy layers with 1 workers; 0 worker failovers, 0 given up"
	if len(img.layers) != 3 {
		t.Fatalf("the test image has %d layers, the expected status says 3", len(img.layers))
	}
	nextFrom(t, msgs, pid, want, 10*time.Second)

	if code, inTime := s.snap.Stop(); code != 0 || !inTime {
		t.Fatalf("snapshotter on SIGTERM: exit code %d, exited within %v: %v; want 0, true", code, stopDeadline, inTime)
	}
	nextFrom(t, msgs, pid, "STOPPING=1", time.Second)
}
