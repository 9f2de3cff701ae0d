package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// optionValue returns the value of key= among a mount's options.
func optionValue(opts []string, key string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestSnapshotDirs: an active snapshot has the work dir overlayfs needs
// (0711, beside its fs dir); a view, which nothing writes, has none; and a
// new layer's root dir is owned like its parent's (an image whose root is
// not root's keeps it so), a base layer's by root.
func TestSnapshotDirs(t *testing.T) {
	ctx := testContext(t)
	s, err := New(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	m, err := s.Prepare(ctx, "base", "")
	if err != nil {
		t.Fatal(err)
	}
	baseFS := m[0].Source
	fi, err := os.Stat(filepath.Join(filepath.Dir(baseFS), "work"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o711 {
		t.Fatalf("work dir of an active snapshot: %v, %v; want a 0711 dir", fi, err)
	}
	if uid, gid := owner(t, baseFS); uid != 0 || gid != 0 {
		t.Fatalf("a base layer's root dir is owned by %d:%d, want 0:0", uid, gid)
	}
	if err := os.Chown(baseFS, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base-c", "base"); err != nil {
		t.Fatal(err)
	}

	m, err = s.Prepare(ctx, "next", "base-c")
	if err != nil {
		t.Fatal(err)
	}
	upper, work := optionValue(m[0].Options, "upperdir"), optionValue(m[0].Options, "workdir")
	if upper == "" || work == "" {
		t.Fatalf("active snapshot on a parent: mounts %+v, want upperdir and workdir", m)
	}
	if fi, err := os.Stat(work); err != nil || !fi.IsDir() {
		t.Fatalf("workdir %s: %v", work, err)
	}
	if uid, gid := owner(t, upper); uid != 1234 || gid != 5678 {
		t.Fatalf("a new layer's root dir is owned by %d:%d, want its parent's 1234:5678", uid, gid)
	}

	if _, err := s.View(ctx, "view", "base-c"); err != nil {
		t.Fatal(err)
	}
	var viewDir string
	ents, err := os.ReadDir(s.snapshotsPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		dir := filepath.Join(s.snapshotsPath(), ent.Name())
		if dir != filepath.Dir(baseFS) && dir != filepath.Dir(upper) {
			viewDir = dir
		}
	}
	if viewDir == "" {
		t.Fatalf("no directory for the view among %v", ents)
	}
	if _, err := os.Stat(filepath.Join(viewDir, "fs")); err != nil {
		t.Fatalf("a view's fs dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(viewDir, "work")); !os.IsNotExist(err) {
		t.Fatalf("a view has a work dir (%v): nothing writes to a view", err)
	}
}

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return ownerOf(fi)
}

// TestOverlayIndexOff: on a kernel whose overlayfs has the inode index,
// every overlay mount turns it off; with the index on, overlayfs refuses a
// lower dir mounted again under another upper dir, which is what two
// containers of one image do.
func TestOverlayIndexOff(t *testing.T) {
	_, err := os.Stat("/sys/module/overlay/parameters/index")
	has := slices.Contains(overlayOptions(), "index=off")
	if (err == nil) != has {
		t.Fatalf("overlay options %v; the kernel's index parameter: %v", overlayOptions(), err)
	}
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
