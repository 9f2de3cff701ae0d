package fusetest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/testreq"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one buffer", 100},
		{"several buffers", 3*64<<10 + 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := bytes.Repeat([]byte{'x'}, tc.size)
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("ReadFile = %d bytes, %v; want %d bytes", len(got), err, len(want))
			}
		})
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("ReadFile of a missing file: %v, want not exist", err)
	}
}

func TestFuseFDs(t *testing.T) {
	testreq.RequireFUSE(t)
	before := FuseFDs(t)
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := FuseFDs(t)
	unix.Close(fd)
	if got != before+1 {
		t.Errorf("FuseFDs with one more fd open = %d, want %d", got, before+1)
	}
}
