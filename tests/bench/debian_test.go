package main

import (
	"archive/tar"
	"bytes"
	"os"
	"testing"
)

// TestLayerFromTar reads every kind of entry a rootfs tar holds back as the
// harness describes it: the Debian base layer must be the tar, entry for
// entry.
func TestLayerFromTar(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755},
		{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "./usr/ping", Mode: 0o4755, Size: 3, Uid: 1, Gid: 2,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "cap"}},
		{Typeflag: tar.TypeLink, Name: "./usr/ping2", Linkname: "./usr/ping"},
		{Typeflag: tar.TypeSymlink, Name: "./bin", Linkname: "usr/bin"},
		{Typeflag: tar.TypeChar, Name: "./null", Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	l, err := layerFromTar(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 5 {
		t.Fatalf("got %d entries, want 5 (the root entry left out): %+v", len(l), l)
	}
	if f := l[0]; f.Path != "/usr" || !f.Mode.IsDir() {
		t.Errorf("dir: %+v", f)
	}
	if f := l[1]; f.Path != "/usr/ping" || string(f.Content) != "abc" || f.Mode&os.ModeSetuid == 0 || f.Uid != 1 || f.Gid != 2 || f.Xattrs["security.capability"] != "cap" {
		t.Errorf("file: %+v", f)
	}
	if f := l[2]; !f.Hardlink || f.Linkname != "/usr/ping" {
		t.Errorf("hard link: %+v", f)
	}
	if f := l[3]; f.Mode&os.ModeSymlink == 0 || f.Linkname != "usr/bin" {
		t.Errorf("symlink: %+v", f)
	}
	if f := l[4]; f.Mode&os.ModeCharDevice == 0 || f.Devmajor != 1 || f.Devminor != 3 {
		t.Errorf("char device: %+v", f)
	}
	if _, err := layerFromTar(bytes.NewReader([]byte("not a tar at all, but long enough to be read as a header block..."))); err == nil {
		t.Error("a broken tar was read without error")
	}
}
