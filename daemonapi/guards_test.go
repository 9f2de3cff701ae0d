package daemonapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The tests in this file pin the bounds of what a worker accepts from the
// API at their edges: each fails when a bound is dropped or moved by one.

func TestLoadLayerRequestBounds(t *testing.T) {
	valid := LoadLayerRequest{
		MountID:     "42",
		ImageRef:    "registry.example/library/alpine:3.20",
		LayerDigest: "sha256:" + strings.Repeat("1", 64),
		TOCDigest:   "sha256:" + strings.Repeat("2", 64),
		Mountpoint:  "/var/lib/lazyfs/snapshots/42/fs",
	}
	for _, tc := range []struct {
		name string
		edit func(r *LoadLayerRequest)
		ok   bool
	}{
		{"valid", func(*LoadLayerRequest) {}, true},
		{"image_ref of the limit", func(r *LoadLayerRequest) { r.ImageRef = strings.Repeat("r", maxRefLength) }, true},
		{"image_ref over the limit", func(r *LoadLayerRequest) { r.ImageRef = strings.Repeat("r", maxRefLength+1) }, false},
		{"image_ref with a control character", func(r *LoadLayerRequest) { r.ImageRef = "a\x7fb" }, false},
		{"image_ref with a newline", func(r *LoadLayerRequest) { r.ImageRef = "a\nb" }, false},
		{"image_ref with a non-breaking space", func(r *LoadLayerRequest) { r.ImageRef = "a\u00a0b" }, false},
		{"mountpoint of the limit", func(r *LoadLayerRequest) { r.Mountpoint = "/" + strings.Repeat("m", maxPathLength-1) }, true},
		{"mountpoint over the limit", func(r *LoadLayerRequest) { r.Mountpoint = "/" + strings.Repeat("m", maxPathLength) }, false},
		{"mountpoint with a control character", func(r *LoadLayerRequest) { r.Mountpoint = "/a\x01" }, false},
		{"mountpoint with a trailing slash", func(r *LoadLayerRequest) { r.Mountpoint = "/a/" }, false},
		{"mountpoint relative", func(r *LoadLayerRequest) { r.Mountpoint = "a" }, false},
		{"layer digest without algorithm", func(r *LoadLayerRequest) { r.LayerDigest = strings.Repeat("1", 64) }, false},
		{"TOC digest too short", func(r *LoadLayerRequest) { r.TOCDigest = "sha256:" + strings.Repeat("2", 63) }, false},
		{"next layers at the limit", func(r *LoadLayerRequest) { r.NextLayers = nextLayers(MaxNextLayers) }, true},
		{"next layers over the limit", func(r *LoadLayerRequest) { r.NextLayers = nextLayers(MaxNextLayers + 1) }, false},
		{"next layer malformed", func(r *LoadLayerRequest) { r.NextLayers = append(nextLayers(1), "sha256:12") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := valid
			tc.edit(&r)
			err := r.validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("validate = %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("validate = %v, want invalid argument", err)
			}
		})
	}
}

func nextLayers(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = "sha256:" + strings.Repeat("3", 64)
	}
	return l
}

// TestMountIDCharacters pins every edge of the allowed byte ranges: a
// mount id becomes a path component and a URL segment.
func TestMountIDCharacters(t *testing.T) {
	for _, c := range "azAZ09" {
		if err := ValidateMountID(string(c) + "x"); err != nil {
			t.Errorf("ValidateMountID(%q) = %v", string(c)+"x", err)
		}
	}
	for _, c := range "._:-" {
		if err := ValidateMountID("x" + string(c)); err != nil {
			t.Errorf("ValidateMountID(%q) = %v", "x"+string(c), err)
		}
		if err := ValidateMountID(string(c) + "x"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateMountID(%q) = %v, want invalid argument", string(c)+"x", err)
		}
	}
	for _, c := range "`{@[/:;" {
		for _, id := range []string{string(c), "x" + string(c)} {
			if c == ':' && id != ":" {
				continue // allowed after the first byte
			}
			if err := ValidateMountID(id); !errdefs.IsInvalidArgument(err) {
				t.Errorf("ValidateMountID(%q) = %v, want invalid argument", id, err)
			}
		}
	}
}

// TestSocketPathLength pins listenUnix's bound to what sun_path holds.
func TestSocketPathLength(t *testing.T) {
	dir, err := os.MkdirTemp("", "dapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pad := func(n int) string { return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1)) }
	ctx := context.Background()

	l, err := listenUnix(ctx, "unixpacket", pad(maxSocketPath))
	if err != nil {
		t.Fatalf("listen on a %d-byte path: %v", maxSocketPath, err)
	}
	l.Close()
	if _, err := listenUnix(ctx, "unixpacket", pad(maxSocketPath+1)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("listen on a %d-byte path = %v, want invalid argument", maxSocketPath+1, err)
	}
}

// TestClientBoundsAnswers guards the client's bound on what a worker may
// answer: a worker is a separate process that parses hostile layers, so
// its answers are bounded before they are read into memory.
func TestClientBoundsAnswers(t *testing.T) {
	dir, err := os.MkdirTemp("", "dapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body.Load().(string))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(path, "w1")
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		body  string
		class func(error) bool
	}{
		{"ok", "ok\n", nil},
		{"ok at the bound", "ok" + strings.Repeat(" ", 1<<10-2), nil},
		{"ok over the bound", "ok" + strings.Repeat(" ", 1<<10-1), errdefs.IsResourceExhausted},
		{"something else", "fine", errdefs.IsUnknown},
	} {
		body.Store(tc.body)
		err := c.Health(ctx)
		if tc.class == nil {
			if err != nil {
				t.Errorf("%s: Health() = %v", tc.name, err)
			}
			continue
		}
		if !tc.class(err) {
			t.Errorf("%s: Health() = %v, wrong class", tc.name, err)
		}
	}
}

// packetPair is a SOCK_SEQPACKET pair wrapped as packetConns.
func packetPair(t *testing.T) (a, b *packetConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *packetConn {
		f := os.NewFile(uintptr(fd), "packet")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return newPacketConn(c.(*net.UnixConn))
	}
	return conn(fds[0]), conn(fds[1])
}

// TestControlPacketBounds pins both bounds of a control packet at their
// edges: its size (MaxControlPacket bytes of JSON) and its fds
// (maxControlFDs).
func TestControlPacketBounds(t *testing.T) {
	ctx := context.Background()
	// msg returns a message whose JSON is exactly n bytes.
	msg := func(n int) ControlMessage {
		m := ControlMessage{Type: MessageError, Error: &ErrorInfo{Code: "x"}}
		b, _ := json.Marshal(m)
		m.Error.Message = strings.Repeat("m", n-len(b))
		return m
	}
	a, b := packetPair(t)
	if err := a.write(ctx, msg(MaxControlPacket)); err != nil {
		t.Fatalf("write of %d bytes: %v", MaxControlPacket, err)
	}
	if got, fds, err := b.read(); err != nil || len(got.Error.Message) == 0 || len(fds) != 0 {
		t.Fatalf("read of %d bytes: %v", MaxControlPacket, err)
	}
	if err := a.write(ctx, msg(MaxControlPacket+1)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("write of %d bytes = %v, want invalid argument", MaxControlPacket+1, err)
	}

	pipes := func(n int) []int {
		var fds []int
		for range n {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			fds = append(fds, p[0])
		}
		t.Cleanup(func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		})
		return fds
	}
	if err := a.write(ctx, ControlMessage{Type: MessageAttach, MountID: "m"}, pipes(maxControlFDs)...); err != nil {
		t.Fatal(err)
	}
	_, fds, err := b.read()
	if err != nil || len(fds) != maxControlFDs {
		t.Fatalf("read of %d fds = %d fds, %v", maxControlFDs, len(fds), err)
	}
	closeFDs(fds)
	if err := a.write(ctx, ControlMessage{Type: MessageAttach, MountID: "m"}, pipes(maxControlFDs+1)...); err != nil {
		t.Fatal(err)
	}
	if _, fds, err := b.read(); !errdefs.IsInvalidArgument(err) || len(fds) != 0 {
		t.Fatalf("read of %d fds = %d fds, %v; want invalid argument", maxControlFDs+1, len(fds), err)
	}
}
