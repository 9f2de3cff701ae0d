package daemonapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// maxSocketPath is the room in sockaddr_un.sun_path, less its NUL.
const maxSocketPath = 107

// listenUnix binds a unix socket of the given network ("unix" or
// "unixpacket") at path, creating the parent directory (0700) if it is
// missing and removing a socket file a previous process left behind. The
// socket ends up with mode 0600.
//
// The socket exists with the umask's mode for the instant between bind and
// chmod; the 0700 parent directory and the peer checks cover that window
// (changing the umask would affect every thread of the process).
func listenUnix(ctx context.Context, network, path string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes long, more than %d: %w", path, len(path), maxSocketPath, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create socket directory: %w", err)
	}
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, network, path)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("failed to restrict socket %s: %w", path, err)
	}
	return ul, nil
}

// removeStaleSocket deletes a socket file at path. Anything else there is
// left alone and reported: it is not ours to delete.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to inspect socket path %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket (%s): %w", path, fi.Mode().Type(), errdefs.ErrAlreadyExists)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove stale socket %s: %w", path, err)
	}
	log.G(ctx).WithField("socket", path).Debug("removed stale socket")
	return nil
}
