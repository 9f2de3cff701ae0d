package testregistry

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lazyfs/lazyfs/internal/fusetest"
)

// CheckFiles reads every file and symlink of l through the mount at dir
// and compares it with what the tar held. Each call is bounded by timeout
// (fusetest.Within).
func CheckFiles(t testing.TB, timeout time.Duration, dir string, l *Layer) {
	t.Helper()
	CheckListing(t, timeout, dir, l)
	for name, want := range l.Files {
		fusetest.Within(t, timeout, "read "+name, func() {
			got, err := fusetest.ReadFile(filepath.Join(dir, name))
			switch {
			case err != nil:
				t.Errorf("read %s: %v", name, err)
			case !bytes.Equal(got, want):
				t.Errorf("%s: got %d bytes, want %d bytes equal to the tar's", name, len(got), len(want))
			}
		})
	}
	for name, want := range l.Links {
		fusetest.Within(t, timeout, "readlink "+name, func() {
			got, err := os.Readlink(filepath.Join(dir, name))
			if err != nil || got != want {
				t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
			}
		})
	}
}

// CheckListing lists the root of the mount at dir, which needs no
// registry: the names come from the TOC.
func CheckListing(t testing.TB, timeout time.Duration, dir string, l *Layer) {
	t.Helper()
	fusetest.Within(t, timeout, "list "+dir, func() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("readdir %s: %v", dir, err)
			return
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if strings.Join(names, ",") != strings.Join(l.Top, ",") {
			t.Errorf("%s lists %q, want %q", dir, names, l.Top)
		}
	})
}
