// Package mgmtapi is the wire of the snapshotter's management API: HTTP and
// JSON on a unix socket, <run_dir>/api.sock (mode 0600), for snapshotterctl
// and other operator tools. It is not the worker's wire (daemonapi): the
// snapshotter answers it from what its supervisor knows, so a hung worker
// never hangs a query.
//
// Endpoints (all under /api/v1):
//
//	GET  /status                      version, health, counts, kernel facts
//	GET  /workers                     every worker
//	GET  /workers/{id}                one worker
//	POST /workers/{id}/restart        planned replacement; answers once the successor serves
//	GET  /workers/{id}/logs?tail=N&follow=1
//	                                  a worker's log as text; follow streams what is
//	                                  appended, across rotations, until the client goes
//	GET  /mounts                      every lazily loaded layer's FUSE mount
//
// Errors are JSON ErrorInfo ({code, message}) with the HTTP status errhttp
// gives the errdefs class; the Client turns them back into that class and
// names the operation and the socket.
package mgmtapi
