package lazyfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/internal/fusetest"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// TestOverlayHonoursWhiteoutsAndOpaqueDirs mounts overlayfs the way a
// container's rootfs is mounted, with the FUSE layer above a plain lower
// layer, and checks what the container sees.
func TestOverlayHonoursWhiteoutsAndOpaqueDirs(t *testing.T) {
	testreq.RequireFUSE(t)
	entries := mainLayerEntries()
	layer := mainLayer(t, 0)
	m := newMount(t, layer.tree(t), &blobReader{blob: layer.blob})
	m.serve(ServeOptions{})

	lower := t.TempDir()
	for p, data := range map[string]string{
		"gone":        "deleted by the upper layer\n",
		"keep.txt":    "kept\n",
		"opq/old.txt": "hidden by the opaque directory\n",
		"bin/extra":   "merged\n",
		"bin/su":      "shadowed\n",
	} {
		if err := os.MkdirAll(filepath.Join(lower, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lower, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir()
	opts := "lowerdir=" + m.dir + ":" + lower + ",upperdir=" + upper + ",workdir=" + work
	within(t, "overlay mount", func() {
		if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	at := func(p string) string { return filepath.Join(merged, p) }

	within(t, "container view", func() {
		for _, p := range []string{"gone", "opq/old.txt"} {
			if _, err := os.Lstat(at(p)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v, want it hidden", p, err)
			}
		}
		if names := readNames(t, at("opq")); !slices.Equal(names, []string{"new.txt"}) {
			t.Errorf("opq lists %q, want only the layer's own file", names)
		}
		if names := readNames(t, at("bin")); !slices.Equal(names, []string{"ash", "busybox", "dangling", "extra", "sh", "su"}) {
			t.Errorf("bin lists %q, want both layers merged", names)
		}
		for p, want := range map[string][]byte{
			"keep.txt":    []byte("kept\n"),
			"bin/su":      entryData(t, entries, "bin/su"),
			"bin/busybox": entryData(t, entries, "bin/busybox"),
			"bin/sh":      entryData(t, entries, "bin/busybox"),
		} {
			if got, err := fusetest.ReadFile(at(p)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, %v", p, len(got), err)
			}
		}

		// A write copies the file up from the FUSE layer, xattrs included.
		f, err := os.OpenFile(at("data/small.txt"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("more\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got, _ := os.ReadFile(filepath.Join(upper, "data/small.txt")); string(got) != "hello, world\nmore\n" {
			t.Errorf("copied-up file holds %q", got)
		}
		if v := getXattr(t, filepath.Join(upper, "data/small.txt"), "user.comment"); v != "hello" {
			t.Errorf("copied-up user.comment %q", v)
		}
	})
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	m.unmount()
}

func readNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
