package lazyfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/fusetest"
)

// TestQuarantineRefusesEverything guards issue 14's quarantine through a
// real mount: a file read once (so that the kernel caches its attributes
// and pages) is refused with EIO once the filesystem is quarantined and its
// nodes invalidated, and so is every other access to data or metadata;
// the mount can still be unmounted.
func TestQuarantineRefusesEverything(t *testing.T) {
	tr := guardTree(t)
	m := newMount(t, tr, fill)
	m.serve(ServeOptions{})
	file := filepath.Join(m.dir, "file")
	// Plain system calls only: os.Open on a mount this process serves
	// can wedge the runtime (see package fusetest).
	open := -1
	within(t, "read before the quarantine", func() {
		b, err := fusetest.ReadFile(file)
		if err != nil || len(b) != 100 {
			t.Fatalf("ReadFile before the quarantine = %d bytes, %v", len(b), err)
		}
		// Kept open across the quarantine: its pages are in the
		// kernel's cache, which only InvalidateAll drops.
		if open, err = fusetest.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := fusetest.Pread(open, make([]byte, 100), 0); err != nil {
			t.Fatal(err)
		}
	})

	// The tree's last NodeId, looked up and its attributes cached.
	last := filepath.Join(m.dir, "xdir")
	if id := idOf(t, tr, "xdir"); id != uint64(tr.Len()) {
		t.Fatalf("xdir is NodeId %d, not the last (%d)", id, tr.Len())
	}
	within(t, "stat before the quarantine", func() {
		if _, err := os.Stat(last); err != nil {
			t.Fatal(err)
		}
	})
	if m.fs.Quarantined() {
		t.Fatal("a new filesystem is quarantined")
	}

	m.fs.Quarantine()
	if err := m.fs.InvalidateAll(m.fd); err != nil {
		t.Fatalf("InvalidateAll: %v", err)
	}
	within(t, "accesses after the quarantine", func() {
		if n, err := fusetest.Pread(open, make([]byte, 100), 0); !errors.Is(err, unix.EIO) {
			t.Errorf("read of a file opened and cached before the quarantine = %d bytes, %v; want EIO", n, err)
		}
		if _, err := fusetest.ReadFile(file); !errors.Is(err, unix.EIO) {
			t.Errorf("ReadFile of a cached file after the quarantine = %v, want EIO", err)
		}
		if _, err := os.Stat(filepath.Join(m.dir, "bin", "exe")); !errors.Is(err, unix.EIO) {
			t.Errorf("Stat of a file never looked up = %v, want EIO", err)
		}
		if _, err := os.ReadDir(m.dir); !errors.Is(err, unix.EIO) {
			t.Errorf("ReadDir of the root = %v, want EIO", err)
		}
		if _, err := os.Readlink(filepath.Join(m.dir, "link")); !errors.Is(err, unix.EIO) {
			t.Errorf("Readlink = %v, want EIO", err)
		}
		// InvalidateAll reaches the last NodeId too.
		if _, err := os.Stat(last); !errors.Is(err, unix.EIO) {
			t.Errorf("Stat of the last node, cached before the quarantine = %v, want EIO", err)
		}
	})
	unix.Close(open)
	within(t, "unmount", m.unmount)
}

// TestQuarantinePassesOnlyWhatHandsOutNothing pins the list of requests a
// quarantined server still answers: releasing what the kernel holds, never
// a lookup, an attribute, a read or a directory listing.
func TestQuarantinePassesOnlyWhatHandsOutNothing(t *testing.T) {
	fs, _ := guardFS(t, fill)
	s := &server{q: fs}
	req := func(opcode uint32) []byte {
		b := make([]byte, 40)
		b[4] = byte(opcode)
		return b
	}
	const (
		lookup, getattr, readlink, open, read, statfs, getxattr, listxattr, opendir, readdir, access, readdirplus = 1, 3, 5, 14, 15, 17, 22, 23, 27, 28, 34, 44
	)
	refused := []uint32{lookup, getattr, readlink, open, read, statfs, getxattr, listxattr, opendir, readdir, access, readdirplus}
	for _, op := range refused {
		if s.refusedByQuarantine(req(op)) {
			t.Errorf("opcode %d refused before the quarantine", op)
		}
	}
	fs.Quarantine()
	for _, op := range refused {
		if !s.refusedByQuarantine(req(op)) {
			t.Errorf("opcode %d answered by a quarantined server", op)
		}
	}
	for op := range quarantinePasses {
		if s.refusedByQuarantine(req(op)) {
			t.Errorf("opcode %d (hands out nothing) refused", op)
		}
	}
	// Too short to hold an opcode: not read past its end. Eight bytes
	// hold one.
	if s.refusedByQuarantine(make([]byte, 7)) {
		t.Error("a 7-byte request refused by the quarantine")
	}
	if !s.refusedByQuarantine(req(read)[:8]) {
		t.Error("an 8-byte READ answered by a quarantined server")
	}
}
