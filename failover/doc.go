// Package failover owns the kernel side of lazyfs's FUSE connections, and
// what it takes to hand one from a dead worker to its successor:
//
//   - Open (OpenFuse + Mount): the snapshotter, never a worker, opens
//     /dev/fuse and mounts, so that it holds a copy of every connection's fd;
//   - Conn: that held copy, kept for the mount's life and never read, with
//     the connection's INIT state (InitState), which a successor replays;
//   - FDStore and TakeListenFDs: copies of those fds in systemd's fd store,
//     so that a connection outlives the snapshotter and its worker dying
//     together;
//   - KernelRelease: whether the kernel has FUSE_NOTIFY_RESEND.
//
// The fds travel to workers over their control sockets (package daemonapi);
// the supervisor decides when to take a connection over; the worker replays
// INIT and resends (package lazyfs).
//
// Rules this package keeps (FAILOVER.md): a kept fd is a raw int, never an
// *os.File that a finalizer could close; a mountpoint whose worker may be
// down is never touched (stat, readdir): callers read /proc/self/mountinfo.
package failover
