package remote

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// fuseTimeoutFiles are the kernel's FUSE request timeouts in seconds (0 =
// none): a FUSE request unanswered for that long aborts the whole
// connection, which is far worse for a container than one failed read.
var fuseTimeoutFiles = []string{
	"/proc/sys/fs/fuse/default_request_timeout",
	"/proc/sys/fs/fuse/max_request_timeout",
}

// KernelRequestTimeout returns the FUSE request timeout the kernel
// enforces, or 0 when none is set (or the kernel has no such setting).
func KernelRequestTimeout() time.Duration {
	var out time.Duration
	for _, f := range fuseTimeoutFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || s <= 0 {
			continue
		}
		if d := time.Duration(s) * time.Second; out == 0 || d < out {
			out = d
		}
	}
	return out
}

// CapReadTimeout returns the read timeout to use under a kernel FUSE
// request timeout: the configured one, or less, so that a read fails with
// EIO a little (a tenth, at least a second) before the kernel would abort
// the connection. A kernel timeout of 0 means none.
func CapReadTimeout(configured, kernel time.Duration) time.Duration {
	if kernel <= 0 {
		return configured
	}
	ceiling := kernel - max(kernel/10, time.Second)
	if ceiling <= 0 {
		ceiling = kernel / 2
	}
	return min(configured, ceiling)
}
