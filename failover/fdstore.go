package failover

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// listenFDsStart is the first fd systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// FDStore keeps copies of FUSE fds in systemd's file descriptor store
// (FDSTORE=1 over $NOTIFY_SOCKET), so that a connection outlives the
// snapshotter and its worker dying together: systemd hands the fds back to
// the next start (LISTEN_FDS, LISTEN_FDNAMES). go-systemd's SdNotify sends no
// fds, hence this small sender. The unit needs FileDescriptorStoreMax=.
//
// A nil *FDStore (no $NOTIFY_SOCKET: not under systemd) does nothing.
type FDStore struct {
	path string // of the notify socket; "@..." is an abstract one
	mu   sync.Mutex
}

// NewFDStore returns the fd store of the service manager that started this
// process, or nil when there is none ($NOTIFY_SOCKET unset).
func NewFDStore() *FDStore {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// x/sys/unix maps a leading '@' to the abstract namespace itself.
	return &FDStore{path: path}
}

// Add stores a copy of fd under name (FDSTORE=1, FDNAME=name). Storing a
// name again adds another copy: remove it first.
func (s *FDStore) Add(name string, fd int) error {
	if s == nil {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	return s.send("FDSTORE=1\nFDNAME="+name+"\n", fd)
}

// Remove drops every fd stored under name (FDSTOREREMOVE=1).
func (s *FDStore) Remove(name string) error {
	if s == nil {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	return s.send("FDSTOREREMOVE=1\nFDNAME="+name+"\n", -1)
}

func (s *FDStore) send(state string, fd int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fd store: %w", err)
	}
	defer unix.Close(sock)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(sock, []byte(state), oob, &unix.SockaddrUnix{Name: s.path}, 0); err != nil {
		return fmt.Errorf("fd store: failed to send %q to %s: %w", strings.TrimSpace(state), s.path, err)
	}
	return nil
}

// checkFDName refuses names systemd would reject: printable ASCII without
// ':' and at most 255 bytes.
func checkFDName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("fd name %q: length %d: %w", name, len(name), errdefs.ErrInvalidArgument)
	}
	for _, r := range name {
		if r < 0x21 || r > 0x7e || r == ':' {
			return fmt.Errorf("fd name %q: invalid character %q: %w", name, r, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// TakeListenFDs returns the fds the service manager passed to this process
// (LISTEN_FDS, for LISTEN_PID, named by LISTEN_FDNAMES), by name, as raw fds
// marked close-on-exec, and unsets those variables so that no child sees
// them. Several fds of one name are all returned. It returns nil when none
// were passed to this process.
//
// The fds are raw ints, not *os.File (go-systemd's activation.Files): a
// garbage-collected *os.File would close a FUSE connection's fd.
func TakeListenFDs() map[string][]int {
	fds := listenFDs(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	for _, list := range fds {
		for _, fd := range list {
			unix.CloseOnExec(fd)
		}
	}
	return fds
}

// listenFDs reads the LISTEN_* variables: the fds passed to process self,
// by name. Fds without a name are "unknown".
func listenFDs(listenPID, listenFDs, listenNames string, self int) map[string][]int {
	pid, err := strconv.Atoi(listenPID)
	if err != nil || pid != self {
		return nil
	}
	n, err := strconv.Atoi(listenFDs)
	if err != nil || n <= 0 {
		return nil
	}
	var names []string
	if listenNames != "" {
		names = strings.Split(listenNames, ":")
	}
	fds := map[string][]int{}
	for i := range n {
		name := "unknown"
		if i < len(names) {
			name = names[i]
		}
		fds[name] = append(fds[name], listenFDsStart+i)
	}
	return fds
}

// MountFDName is the fd store name of a mount's connection.
func MountFDName(mountID string) string { return "lazyfs-mount-" + mountID }

// MountIDFromFDName is the inverse of MountFDName; ok is false for names
// that are not a mount's.
func MountIDFromFDName(name string) (string, bool) {
	return strings.CutPrefix(name, "lazyfs-mount-")
}
