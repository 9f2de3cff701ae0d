package failover

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// KernelRelease returns the running kernel's release (uname -r) and whether
// it is recent enough for FUSE_NOTIFY_RESEND (Linux 6.9): the start-up
// check. A connection's own INIT flags (InitState.SupportsResend) are the
// authority once a layer is mounted.
func KernelRelease() (release string, resend bool, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", false, fmt.Errorf("uname: %w", err)
	}
	release = unix.ByteSliceToString(u.Release[:])
	resend, err = releaseHasResend(release)
	return release, resend, err
}

// releaseHasResend tells whether a kernel release (6.18.0-1-amd64) is 6.9
// or later.
func releaseHasResend(release string) (bool, error) {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return false, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return major > 6 || (major == 6 && minor >= 9), nil
}
