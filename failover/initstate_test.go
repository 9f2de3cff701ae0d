package failover

import (
	"encoding/binary"
	"testing"

	"github.com/containerd/errdefs"
)

// initRequest builds an INIT request as a 6.18 kernel sends it, offering
// flags.
func initRequest(flags uint64) []byte {
	req := make([]byte, inHeaderSize+64)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint32(req[opcodeOffset:], opInit)
	binary.NativeEndian.PutUint32(req[initFlags:], uint32(flags))
	binary.NativeEndian.PutUint32(req[initFlags2:], uint32(flags>>32))
	return req
}

func TestInitStateFlags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  uint64
		resend bool
	}{
		{"resend", capInitExt | capHasResend, true},
		{"no resend", capInitExt | 1, false},
		// flags2 only counts when the kernel says it sent it.
		{"flags2 without INIT_EXT", capHasResend, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := InitState{Request: initRequest(tc.flags)}
			if got := s.SupportsResend(); got != tc.resend {
				t.Errorf("SupportsResend = %v, want %v", got, tc.resend)
			}
			flags, err := s.KernelFlags()
			if err != nil {
				t.Fatal(err)
			}
			want := tc.flags
			if tc.flags&capInitExt == 0 {
				want &= 1<<32 - 1
			}
			if flags != want {
				t.Errorf("KernelFlags = %#x, want %#x", flags, want)
			}
		})
	}
	notInit := initRequest(capInitExt | capHasResend)
	binary.NativeEndian.PutUint32(notInit[opcodeOffset:], 15)
	for name, bad := range map[string]InitState{
		"empty":     {},
		"truncated": {Request: initRequest(capInitExt | capHasResend)[:initFlags+3]},
		"not INIT":  {Request: notInit},
	} {
		if _, err := bad.KernelFlags(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("KernelFlags of %s request: %v, want InvalidArgument", name, err)
		}
		if bad.SupportsResend() {
			t.Errorf("SupportsResend of %s request = true", name)
		}
	}
	// A kernel before 5.17 sends no second flags word: the first one is
	// read, the second is never read past the request.
	full := initRequest(capInitExt | 1 | capHasResend)
	for _, tc := range []struct {
		n      int
		resend bool
	}{{initFlags + 4, false}, {initFlags2 + 3, false}, {initFlags2 + 4, true}} {
		flags, err := (InitState{Request: full[:tc.n]}).KernelFlags()
		if err != nil || flags&1 == 0 || (flags&capHasResend != 0) != tc.resend {
			t.Errorf("KernelFlags of a %d-byte request = %#x, %v; want the first word, resend %v", tc.n, flags, err, tc.resend)
		}
	}
	if !(InitState{}).IsZero() || (InitState{Request: []byte{1}}).IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestInitStateKernelProtocol(t *testing.T) {
	req := initRequest(capInitExt)
	binary.NativeEndian.PutUint32(req[inHeaderSize:], 7)
	binary.NativeEndian.PutUint32(req[inHeaderSize+4:], 41)
	major, minor, err := InitState{Request: req}.KernelProtocol()
	if err != nil || major != 7 || minor != 41 {
		t.Errorf("KernelProtocol = %d.%d, %v; want 7.41", major, minor, err)
	}
	if _, _, err := (InitState{}).KernelProtocol(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("KernelProtocol of no request: %v, want InvalidArgument", err)
	}
}

func TestReleaseHasResend(t *testing.T) {
	for release, want := range map[string]bool{
		"6.18.0-1-amd64": true, "6.9.0": true, "6.10.3-arch1": true, "7.0.1": true,
		"6.8.12-generic": false, "6.1.0-28-amd64": false, "5.15.0": false,
	} {
		got, err := releaseHasResend(release)
		if err != nil || got != want {
			t.Errorf("releaseHasResend(%q) = %v, %v; want %v", release, got, err, want)
		}
	}
	if _, err := releaseHasResend("weird"); err == nil {
		t.Error("an unparsable release was accepted")
	}
	if _, _, err := KernelRelease(); err != nil {
		t.Errorf("KernelRelease: %v", err)
	}
}
