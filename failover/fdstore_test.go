package failover

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// notifySocket listens where NOTIFY_SOCKET points for the test and returns
// a function reading the next datagram with its fds.
func notifySocket(t *testing.T) func() (string, []int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() (string, []int) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf, oob := make([]byte, 1024), make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		var fds []int
		scms, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, scm := range scms {
			got, _ := unix.ParseUnixRights(&scm)
			fds = append(fds, got...)
		}
		return string(buf[:n]), fds
	}
}

func TestFDStoreSendsFDs(t *testing.T) {
	next := notifySocket(t)
	s := NewFDStore()
	if s == nil {
		t.Fatal("no fd store with NOTIFY_SOCKET set")
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	if err := s.Add(MountFDName("7"), p[1]); err != nil {
		t.Fatal(err)
	}
	msg, fds := next()
	if msg != "FDSTORE=1\nFDNAME=lazyfs-mount-7\n" || len(fds) != 1 {
		t.Fatalf("stored %q with %d fds", msg, len(fds))
	}
	// The stored fd is a copy of the connection's: it writes into the pipe.
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	got := make([]byte, 1)
	if n, err := unix.Read(p[0], got); n != 1 || err != nil {
		t.Fatalf("the stored fd is not the one added: %d, %v", n, err)
	}

	if err := s.Remove(MountFDName("7")); err != nil {
		t.Fatal(err)
	}
	if msg, fds := next(); msg != "FDSTOREREMOVE=1\nFDNAME=lazyfs-mount-7\n" || len(fds) != 0 {
		t.Errorf("removed with %q and %d fds", msg, len(fds))
	}

	// Names systemd would refuse are refused here, before anything is sent.
	for _, name := range []string{"", "a:b", "sp ace", "tab\t", string(make([]byte, 256)), "é"} {
		if err := s.Add(name, p[1]); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Add(%q): %v, want invalid argument", name, err)
		}
		if err := s.Remove(name); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Remove(%q): %v, want invalid argument", name, err)
		}
	}
	if err := s.Add(string(bytes.Repeat([]byte("a"), 255)), p[1]); err != nil {
		t.Errorf("a 255-byte name: %v", err)
	}
	next()
	// The edges of printable ASCII pass; DEL does not.
	for _, name := range []string{"!", "~"} {
		if err := s.Remove(name); err != nil {
			t.Errorf("Remove(%q): %v", name, err)
		}
		next()
	}
	if err := s.Remove("\x7f"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Remove of a name with DEL: %v, want invalid argument", err)
	}
	// fd 0 is an fd: it is sent.
	if err := s.Add("zero", 0); err != nil {
		t.Fatal(err)
	}
	if _, fds := next(); len(fds) != 1 {
		t.Errorf("Add of fd 0 sent %d fds, want 1", len(fds))
	} else {
		unix.Close(fds[0])
	}
}

func TestFDStoreUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	s := NewFDStore()
	if s != nil {
		t.Fatal("an fd store without NOTIFY_SOCKET")
	}
	// A nil store (not under systemd) does nothing, without error.
	if err := s.Add("x", 0); err != nil {
		t.Error(err)
	}
	if err := s.Remove("x"); err != nil {
		t.Error(err)
	}
	// A store whose socket is gone reports it.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := NewFDStore().Remove("x"); err == nil {
		t.Error("sending to a missing notify socket succeeded")
	}
}

func TestListenFDs(t *testing.T) {
	const self = 1234
	for _, tc := range []struct {
		name              string
		pid, fds, fdnames string
		want              map[string][]int
	}{
		{"another process's", "1", "2", "a:b", nil},
		{"no pid", "", "2", "a:b", nil},
		{"none", "1234", "0", "", nil},
		{"not a number", "1234", "x", "", nil},
		{"named, two of one name", "1234", "3", "lazyfs-mount-1:lazyfs-mount-1:lazyfs-mount-2",
			map[string][]int{"lazyfs-mount-1": {3, 4}, "lazyfs-mount-2": {5}}},
		{"fewer names than fds", "1234", "2", "lazyfs-mount-1", map[string][]int{"lazyfs-mount-1": {3}, "unknown": {4}}},
		{"no names", "1234", "1", "", map[string][]int{"unknown": {3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := listenFDs(tc.pid, tc.fds, tc.fdnames, self)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("listenFDs = %v, want %v", got, tc.want)
			}
		})
	}
	// TakeListenFDs consumes the variables, so that no child takes the
	// fds as its own. (No fd is passed here: its fds 3 and up are the
	// test process's own.)
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_FDNAMES", "a:b")
	if got := TakeListenFDs(); got != nil {
		t.Errorf("fds meant for another pid taken: %v", got)
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s still set: a child would take the fds as its own", v)
		}
	}
	if id, ok := MountIDFromFDName(MountFDName("42")); !ok || id != "42" {
		t.Errorf("MountIDFromFDName(MountFDName(42)) = %q, %v", id, ok)
	}
	if _, ok := MountIDFromFDName("other"); ok {
		t.Error("a foreign name taken for a mount's")
	}
}
