package failover

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// fuseDevice is the FUSE character device every connection is opened from.
const fuseDevice = "/dev/fuse"

// mountFlags make every lazy layer read-only and keep its contents from
// granting privileges on the host: containers see it only as an overlay lower
// layer, whose own mount decides about setuid and devices.
const mountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV

// OpenFuse opens /dev/fuse and returns the raw file descriptor.
//
// The caller owns the fd and must close it with unix.Close. It is
// deliberately not an *os.File: a garbage-collected *os.File closes its fd,
// and the last close of a FUSE fd aborts the connection and every reader of
// the mount (FAILOVER.md rule 1).
func OpenFuse() (int, error) {
	fd, err := unix.Open(fuseDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("failed to open %s: %w", fuseDevice, classify(err))
	}
	return fd, nil
}

// Mount mounts the FUSE connection fd (from OpenFuse) read-only at
// mountpoint, as filesystem type "fuse.<subtype>" with source fsname, so that
// /proc/self/mountinfo names the layer.
//
// mount(2) returns before the kernel's INIT request is answered: until a
// server answers it on fd, any access to mountpoint blocks. Never stat the
// mountpoint from the goroutine that is to serve it.
func Mount(fd int, mountpoint, fsname, subtype string) error {
	if fd < 0 {
		return fmt.Errorf("mount %s: invalid fd %d: %w", mountpoint, fd, errdefs.ErrInvalidArgument)
	}
	if fsname == "" || strings.ContainsAny(fsname, " \t\n") {
		return fmt.Errorf("mount %s: invalid fsname %q: %w", mountpoint, fsname, errdefs.ErrInvalidArgument)
	}
	// The subtype ends up in the type string and in mountinfo, where a
	// separator would corrupt parsing.
	if subtype == "" || strings.ContainsAny(subtype, " \t\n,./") {
		return fmt.Errorf("mount %s: invalid subtype %q: %w", mountpoint, subtype, errdefs.ErrInvalidArgument)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd)
	if err := unix.Mount(fsname, mountpoint, "fuse."+subtype, mountFlags, data); err != nil {
		return fmt.Errorf("failed to mount FUSE at %s: %w", mountpoint, classify(err))
	}
	return nil
}

// Unmount unmounts mountpoint. With lazy it detaches the mount at once
// (MNT_DETACH) even while it is busy or its server is gone; the kernel then
// ends the connection when the last user leaves. A mountpoint that is not
// mounted or does not exist is not an error, so Unmount can be repeated.
//
// Symbolic links are not followed: the mountpoint is the path the mount was
// made on, never a link someone put in its place.
func Unmount(mountpoint string, lazy bool) error {
	flags := unix.UMOUNT_NOFOLLOW
	if lazy {
		flags |= unix.MNT_DETACH
	}
	for {
		err := unix.Unmount(mountpoint, flags)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// EINVAL: not a mount point (any more).
			return nil
		default:
			return fmt.Errorf("failed to unmount %s: %w", mountpoint, classify(err))
		}
	}
}

// classify adds the errdefs class that callers branch on to an errno,
// keeping the errno itself reachable with errors.Is.
func classify(err error) error {
	var class error
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		class = errdefs.ErrNotFound
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		class = errdefs.ErrPermissionDenied
	case errors.Is(err, unix.EINVAL):
		class = errdefs.ErrInvalidArgument
	case errors.Is(err, unix.EBUSY):
		class = errdefs.ErrUnavailable
	default:
		return err
	}
	return fmt.Errorf("%w: %w", err, class)
}
