package daemonapi

import (
	"context"
	"net"
	"sync"
)

// ControlListener is a worker's control socket, bound and ready for
// ServeControl.
type ControlListener struct {
	l    *net.UnixListener
	path string

	closeOnce sync.Once
	closeErr  error
}

// ListenControl binds the control socket at path (SOCK_SEQPACKET, mode
// 0600). The parent directory is created with mode 0700 if it is missing,
// and a socket file left at path by an earlier process is removed; any other
// file there is an error.
func ListenControl(ctx context.Context, path string) (*ControlListener, error) {
	l, err := listenUnix(ctx, "unixpacket", path)
	if err != nil {
		return nil, err
	}
	return &ControlListener{l: l, path: path}, nil
}

// Path is where the socket is bound.
func (l *ControlListener) Path() string { return l.path }

// Close stops accepting controllers and removes the socket file. Admitted
// connections are ServeControl's to end.
// Closing twice is harmless.
func (l *ControlListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.l.Close() })
	return l.closeErr
}
