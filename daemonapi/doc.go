// Package daemonapi defines the two channels between the snapshotter and a
// lazyfsd worker, with a client and a server for each.
//
// The control socket is a unix SOCK_SEQPACKET socket the worker listens on.
// It carries what HTTP cannot: file descriptors. One JSON message travels
// per packet; a /dev/fuse fd rides along with SCM_RIGHTS. The snapshotter
// attaches a mounted FUSE connection with [ControlClient.Attach] and gets
// back the raw FUSE INIT request and reply the worker exchanged on it, which
// a successor needs to take the connection over. Only one controller is
// admitted at a time, and only a peer running as root or as the worker's own
// uid (checked with SO_PEERCRED).
//
// The HTTP+JSON API on a second unix socket carries everything else:
// daemon information, loading a layer's table of contents, detaching a
// mount, shutdown, health and metrics ([NewServer], [Client]).
//
// A worker's configuration is a third, one-way message: [WorkerConfig], a
// versioned JSON file the snapshotter writes and every worker reads at
// start ([WriteWorkerConfig], [ReadWorkerConfig]); its identity (id and
// sockets) comes apart, as a flag or, for the standby, as an [Identity] line.
//
// Errors cross both wires as {"code", "message"}, where code names the
// errdefs class of the error, so that a caller can branch on
// errors.Is(err, errdefs.ErrInvalidArgument) on its side of the socket.
//
// The package depends on little beyond the standard library on purpose: it
// is imported by both the snapshotter and the worker, and must stay cheap to
// keep compatible across a live upgrade of either.
package daemonapi
