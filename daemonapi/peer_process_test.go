package daemonapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// The tests in this file check the control socket's peer checks against a
// real process of another user: the test binary runs again as uid 65534
// (SysProcAttr.Credential), in the helper mode that peerHelperEnv selects,
// and the kernel's SO_PEERCRED then names that uid.

const (
	peerHelperEnv = "LAZYFS_DAEMONAPI_PEER_HELPER"
	peerPathEnv   = "LAZYFS_DAEMONAPI_PEER_PATH"
	nobody        = 65534
)

// TestPeerHelper is not a test: it is what the test binary runs as another
// uid when peerHelperEnv names a mode, and nothing otherwise.
func TestPeerHelper(t *testing.T) {
	mode := os.Getenv(peerHelperEnv)
	if mode == "" {
		return
	}
	path := os.Getenv(peerPathEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch mode {
	case "dial":
		// Connect without DialControl's own check of the worker, which
		// runs as root: report how the worker answered this uid.
		fmt.Println(rawGreeting(ctx, path))
	case "serve":
		// Be a worker running as this uid that greets every controller
		// without checking it, so that only the controller's check of
		// this uid can refuse the connection.
		l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			fmt.Println("listen:", err)
			return
		}
		defer l.Close()
		go func() {
			hello, _ := json.Marshal(daemonapi.ControlMessage{Type: daemonapi.MessageHello})
			for {
				c, err := l.AcceptUnix()
				if err != nil {
					return
				}
				c.Write(hello) // left open until the helper exits
			}
		}()
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// rawGreeting connects to the control socket at path and names the
// worker's first answer: "admitted" for a greeting, else the error's class.
func rawGreeting(ctx context.Context, path string) string {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return outcome(err)
	}
	defer nc.Close()
	buf := make([]byte, daemonapi.MaxControlPacket)
	n, err := nc.Read(buf)
	if err != nil {
		return outcome(err)
	}
	var msg daemonapi.ControlMessage
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return outcome(err)
	}
	switch {
	case msg.Error != nil:
		return outcome(msg.Error.Err(0))
	case msg.Type == daemonapi.MessageHello:
		return outcome(nil)
	default:
		return fmt.Sprintf("other: %q", msg.Type)
	}
}

// outcome names an error's class for the helper's report.
func outcome(err error) string {
	switch {
	case err == nil:
		return "admitted"
	case errdefs.IsPermissionDenied(err):
		return "permission denied"
	default:
		return "other: " + err.Error()
	}
}

// helperCommand runs the test binary as uid and gid 65534 in mode, from a
// copy that user may execute (go test's build directory is private to root).
func helperCommand(t *testing.T, mode, path string) *exec.Cmd {
	t.Helper()
	testreq.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestPeerHelper$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), peerHelperEnv+"="+mode, peerPathEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Stderr = os.Stderr
	return cmd
}

// openUp lets uid 65534 reach the socket at path, so that SO_PEERCRED, not
// the file system, is what decides.
func openUp(t *testing.T, path string) {
	t.Helper()
	for _, dir := range []string{filepath.Dir(filepath.Dir(path)), filepath.Dir(path)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerRefusesControllerOfAnotherUID guards the worker's peer check:
// a controller running as neither root nor the worker's uid is refused
// with permission denied, and a root controller is admitted afterwards.
func TestWorkerRefusesControllerOfAnotherUID(t *testing.T) {
	attached := make(chan string, 1)
	path := startControl(t, attachFunc(func(_ context.Context, mountID string, fd int) (failover.InitState, error) {
		unix.Close(fd)
		attached <- mountID
		return stateFor(mountID), nil
	}))
	openUp(t, path)
	out, err := helperCommand(t, "dial", path).Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	// The first line is the helper's; go test's verdict follows.
	if got, _, _ := strings.Cut(string(out), "\n"); got != "permission denied" {
		t.Fatalf("a controller running as uid %d was answered %q, want permission denied", nobody, got)
	}
	// The refused peer did not take the controller's place.
	c := dial(t, path)
	r, _ := pipe(t)
	if _, err := c.Attach(testContext(t), daemonapi.AttachRequest{MountID: "m"}, r); err != nil {
		t.Fatalf("root controller after a refusal: %v", err)
	}
	if got := <-attached; got != "m" {
		t.Errorf("attached %q, want m", got)
	}
}

// TestControllerRefusesWorkerOfAnotherUID guards the controller's peer
// check: a worker socket served by a process running as neither root nor
// the controller's uid is not handed fds; DialControl fails with
// permission denied.
func TestControllerRefusesWorkerOfAnotherUID(t *testing.T) {
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "control.sock")
	cmd := helperCommand(t, "serve", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v; want ready", line, err)
	}
	ctx, cancel := context.WithTimeout(testContext(t), 10*time.Second)
	defer cancel()
	c, err := daemonapi.DialControl(ctx, path)
	if err == nil {
		c.Close()
	}
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), fmt.Sprintf("uid %d", nobody)) {
		t.Fatalf("DialControl to a worker running as uid %d = %v, want permission denied naming the uid", nobody, err)
	}
}
