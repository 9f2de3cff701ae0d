package daemonapi_test

import (
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/daemonapi"
)

// rawControl connects to a control socket without the client, and reads
// the worker's greeting.
func rawControl(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if hello := readMessage(t, conn); hello.Type != daemonapi.MessageHello || hello.Version != daemonapi.ControlVersion {
		t.Fatalf("greeting = %+v", hello)
	}
	return conn
}

func readMessage(t *testing.T, conn *net.UnixConn) daemonapi.ControlMessage {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, daemonapi.MaxControlPacket)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if oobn != 0 {
		t.Errorf("worker sent %d bytes of ancillary data", oobn)
	}
	var msg daemonapi.ControlMessage
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		t.Fatalf("worker sent %q: %v", buf[:n], err)
	}
	return msg
}

// sendEmpty sends a zero-length packet carrying fds. The net and unix
// packages add a byte to such a message, so this takes the raw syscall.
func sendEmpty(t *testing.T, conn *net.UnixConn, fds []int) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	oob := unix.UnixRights(fds...)
	var msg unix.Msghdr
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	var errno unix.Errno
	raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
	})
	runtime.KeepAlive(oob)
	if errno != 0 {
		t.Fatal(errno)
	}
}

func TestMalformedControlPackets(t *testing.T) {
	checkLeaks(t)
	path := startControl(t, closingHandler)
	conn := rawControl(t, path)

	for _, tc := range []struct {
		name     string
		packet   string
		fds      int
		empty    bool // zero-length packet (with fds)
		wantType daemonapi.MessageType
		wantSeq  uint64
		wantCode string
		wantText string
	}{
		{name: "not JSON", packet: "hello?", wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "invalid JSON"},
		{name: "not JSON with an fd", packet: "{", fds: 1, wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "invalid JSON"},
		{name: "empty with an fd", empty: true, fds: 1, wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "empty packet"},
		{name: "no type", packet: `{"seq":1}`, wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "no message type"},
		{name: "too large", packet: `{"type":"attach","mount_id":"` + strings.Repeat("m", daemonapi.MaxControlPacket) + `"}`, fds: 1, wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "larger than"},
		{name: "too many fds", packet: `{"type":"attach","seq":2,"mount_id":"m"}`, fds: 40, wantType: daemonapi.MessageError, wantCode: daemonapi.CodeInvalidArgument, wantText: "fds"},
		{name: "attach without fd", packet: `{"type":"attach","seq":3,"mount_id":"m"}`, wantType: daemonapi.MessageAttach, wantSeq: 3, wantCode: daemonapi.CodeInvalidArgument, wantText: "0 fds"},
		{name: "attach with two fds", packet: `{"type":"attach","seq":4,"mount_id":"m"}`, fds: 2, wantType: daemonapi.MessageAttach, wantSeq: 4, wantCode: daemonapi.CodeInvalidArgument, wantText: "2 fds"},
		{name: "attach without mount id", packet: `{"type":"attach","seq":5}`, fds: 1, wantType: daemonapi.MessageAttach, wantSeq: 5, wantCode: daemonapi.CodeInvalidArgument, wantText: "mount id is empty"},
		{name: "attach with a bad mount id", packet: `{"type":"attach","seq":6,"mount_id":"../etc"}`, fds: 1, wantType: daemonapi.MessageAttach, wantSeq: 6, wantCode: daemonapi.CodeInvalidArgument, wantText: "not allowed"},
		{name: "collect with an fd", packet: `{"type":"collect","seq":7}`, fds: 1, wantType: daemonapi.MessageCollect, wantSeq: 7, wantCode: daemonapi.CodeInvalidArgument, wantText: "1 fds"},
		{name: "collect", packet: `{"type":"collect","seq":8}`, wantType: daemonapi.MessageCollect, wantSeq: 8, wantCode: daemonapi.CodeNotImplemented},
		{name: "unknown type with an fd", packet: `{"type":"frobnicate","seq":9}`, fds: 1, wantType: daemonapi.MessageError, wantSeq: 9, wantCode: daemonapi.CodeNotImplemented, wantText: "frobnicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var readEnds, writeEnds []int
			for range tc.fds {
				r, w := rawPipe(t)
				readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
			}
			defer func() {
				for _, w := range writeEnds {
					unix.Close(w)
				}
			}()
			if tc.empty {
				sendEmpty(t, conn, readEnds)
			} else {
				var oob []byte
				if len(readEnds) > 0 {
					oob = unix.UnixRights(readEnds...)
				}
				if _, _, err := conn.WriteMsgUnix([]byte(tc.packet), oob, nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range readEnds {
				unix.Close(r)
			}

			reply := readMessage(t, conn)
			if reply.Type != tc.wantType || reply.Seq != tc.wantSeq {
				t.Errorf("reply %+v, want type %q seq %d", reply, tc.wantType, tc.wantSeq)
			}
			if reply.Error == nil || reply.Error.Code != tc.wantCode || !strings.Contains(reply.Error.Message, tc.wantText) {
				t.Errorf("reply error %+v, want code %s and a message with %q", reply.Error, tc.wantCode, tc.wantText)
			}
			if reply.Type == daemonapi.MessageCollect && !reply.Last {
				t.Error("a collect answer must end with last")
			}
			// Every fd that came with a refused packet was closed.
			for i, w := range writeEnds {
				if !readersGone(t, w) {
					t.Errorf("fd %d of %d was kept by the worker", i+1, len(writeEnds))
				}
			}
		})
	}

	t.Run("the connection survives", func(t *testing.T) {
		r, w := rawPipe(t)
		defer unix.Close(w)
		if _, _, err := conn.WriteMsgUnix([]byte(`{"type":"attach","seq":42,"mount_id":"m","unknown_field":true}`), unix.UnixRights(r), nil); err != nil {
			t.Fatal(err)
		}
		unix.Close(r)
		reply := readMessage(t, conn)
		if reply.Type != daemonapi.MessageAttach || reply.Seq != 42 || reply.Error != nil || string(reply.InitRequest) != "req:m" {
			t.Errorf("reply %+v", reply)
		}
	})
}
