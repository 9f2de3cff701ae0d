package daemonapi

import "github.com/lazyfs/lazyfs/failover"

// Control socket protocol.
//
// After admitting a controller the worker sends hello; a refused controller
// gets an error message and the connection is closed. Requests carry a seq
// chosen by the controller; every reply carries the seq of its request, so
// that replies to requests a controller gave up on can be told apart.
//
//	controller → worker                         worker → controller
//	attach {seq, mount_id} + 1 fd               attach {seq, mount_id, init_request, init_reply}
//	attach {seq, mount_id, init_request,        attach {seq, mount_id, error}
//	        init_reply, defer_resend} + 1 fd
//	attach {seq, mount_id, recover_init} + 1 fd
//	collect {seq}                               collect {seq, mount_id, init_request, init_reply} + 1 fd, once per mount
//	                                            collect {seq, last: true} (or with error)
//	resend {seq, mount_id}                      resend {seq, mount_id} (or with error)
//	stderr {seq} + 1 fd                         stderr {seq} (or with error)
//	                                            error {seq or 0, error}: a packet the worker could not take
//
// An attach that carries INIT state takes over a connection another worker
// initialised (failover): the worker replays that INIT instead of reading
// one, and sends FUSE_NOTIFY_RESEND before its first read unless
// defer_resend is set (a planned replacement, whose predecessor still
// answers what it read; resend is sent once it is gone). recover_init marks
// a fresh connection whose INIT a dead worker may have read unanswered.
// collect hands a re-adopting controller a copy of every connection the
// worker serves, with its INIT state. stderr gives the worker a new fd 2 (and
// 1): the write end of a re-adopting controller's log pipe, since the pipe of
// the controller that spawned it died with it.
//
// Unknown fields are ignored, so that a snapshotter and a worker of
// neighbouring versions (during a live upgrade of either) still understand
// each other; an unknown type is answered with not_implemented.

// ControlVersion is the control protocol version a worker announces in
// hello.
const ControlVersion = 1

// MaxControlPacket bounds one control message. INIT state is about 200
// bytes; the bound leaves room for later fields and rejects garbage early.
const MaxControlPacket = 64 << 10

// maxControlFDs is how many fds a received packet may carry before the
// kernel truncates the control data (and closes the excess); more than one
// is always an error, the room is there to see and close them.
const maxControlFDs = 16

// MessageType names a control message.
type MessageType string

// Control message types.
const (
	// MessageHello is the worker's greeting to an admitted controller.
	MessageHello MessageType = "hello"
	// MessageAttach hands the worker a mounted /dev/fuse fd (request) and
	// returns its INIT state (reply).
	MessageAttach MessageType = "attach"
	// MessageCollect asks the worker for every fd and INIT state it holds,
	// for failover; answered with one collect message per mount, each with
	// its fd, and a final one with Last set.
	MessageCollect MessageType = "collect"
	// MessageResend asks the worker to send FUSE_NOTIFY_RESEND on a
	// mount it took over with defer_resend, now that its predecessor is
	// gone.
	MessageResend MessageType = "resend"
	// MessageStderr hands the worker a new stderr (and stdout): the write
	// end of the controller's pipe into the worker's log file.
	MessageStderr MessageType = "stderr"
	// MessageError reports a packet the worker could not take, or why a
	// controller was refused.
	MessageError MessageType = "error"
)

// ControlMessage is one packet on the control socket. Which fields are set
// depends on Type (see the protocol above).
type ControlMessage struct {
	Type MessageType `json:"type"`
	// Seq pairs a reply with its request; 0 only in hello and in errors
	// about packets whose seq could not be read.
	Seq uint64 `json:"seq,omitempty"`
	// Version is the worker's ControlVersion (hello).
	Version int `json:"version,omitempty"`
	// MountID names the mount an attach or collect message is about.
	MountID string `json:"mount_id,omitempty"`
	// InitRequest is the raw FUSE INIT request the kernel sent (header
	// included), InitReply the raw reply the worker wrote. In an attach
	// request they are the state of the connection to take over.
	InitRequest []byte `json:"init_request,omitempty"`
	InitReply   []byte `json:"init_reply,omitempty"`
	// DeferResend (attach with INIT state): do not send
	// FUSE_NOTIFY_RESEND yet; a resend message follows.
	DeferResend bool `json:"defer_resend,omitempty"`
	// RecoverInit (attach without INIT state): a dead worker may have
	// read this connection's INIT; have the kernel send it again.
	RecoverInit bool `json:"recover_init,omitempty"`
	// Last marks the final message of a collect answer.
	Last bool `json:"last,omitempty"`
	// Error is set when the request failed.
	Error *ErrorInfo `json:"error,omitempty"`
}

// AttachRequest says how a worker is to serve the connection it is handed.
type AttachRequest struct {
	// MountID names the loaded layer the connection serves.
	MountID string
	// Resume is the INIT state of a connection another worker
	// initialised (a takeover); nil for a fresh connection.
	Resume *failover.InitState
	// DeferResend, with Resume: the previous worker is still alive (a
	// planned replacement); FUSE_NOTIFY_RESEND waits for a Resend.
	DeferResend bool
	// RecoverInit, without Resume: a worker that died may have read the
	// connection's INIT without answering it.
	RecoverInit bool
}

// HeldConnection is one connection a worker serves, as collect hands it to
// a controller: the mount, a copy of its /dev/fuse fd and its INIT state.
type HeldConnection struct {
	MountID string
	FD      int
	Init    failover.InitState
}
