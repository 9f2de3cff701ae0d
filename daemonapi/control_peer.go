package daemonapi

import (
	"fmt"
	"net"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// peerCred returns the credentials the kernel recorded for the process at
// the other end of conn when the connection was made (SO_PEERCRED).
func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("failed to reach socket: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("failed to reach socket: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("failed to read SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}

// checkPeer admits a peer running as root or as this process's effective uid: the
// only ones that may hand fds to a worker or take them from it.
func checkPeer(conn *net.UnixConn) (*unix.Ucred, error) {
	cred, err := peerCred(conn)
	if err != nil {
		return nil, err
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return cred, fmt.Errorf("peer pid %d runs as uid %d, not root or uid %d: %w", cred.Pid, cred.Uid, os.Geteuid(), errdefs.ErrPermissionDenied)
	}
	return cred, nil
}
