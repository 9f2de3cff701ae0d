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
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return release, false, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return release, major > 6 || (major == 6 && minor >= 9), nil
}
