// Package failover owns the kernel side of lazyfs's FUSE connections: it
// opens /dev/fuse and mounts it (the snapshotter does this, never a worker,
// so that the snapshotter can keep a copy of every connection's fd), and
// unmounts. The later failover work adds fd holding and passing between
// workers (SCM_RIGHTS), INIT state, takeover, and the systemd fd store.
//
// Rules this package keeps (FAILOVER.md): a kept fd is a raw int, never an
// *os.File that a finalizer could close; a mountpoint whose worker may be
// down is never touched (stat, readdir): callers read /proc/self/mountinfo.
package failover
