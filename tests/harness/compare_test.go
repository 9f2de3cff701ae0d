package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// compareBaseTime is the mtime of every path of the trees compared below.
var compareBaseTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// buildCompareTree creates one path of every kind under dir.
func buildCompareTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("hello"), 0o644))
	must(os.Chmod(filepath.Join(dir, "file"), 0o644)) // whatever the umask
	must(os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	must(os.Chmod(filepath.Join(dir, "dir"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "dir", "nested"), []byte("nested"), 0o600))
	must(os.Symlink("file", filepath.Join(dir, "link")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(unix.Mknod(filepath.Join(dir, "chardev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Chmod(filepath.Join(dir, "fifo"), 0o644))
	must(os.Chmod(filepath.Join(dir, "chardev"), 0o666))
	must(os.WriteFile(filepath.Join(dir, "xattr"), []byte("x"), 0o644))
	must(os.Chmod(filepath.Join(dir, "xattr"), 0o644))
	must(unix.Lsetxattr(filepath.Join(dir, "xattr"), "user.a", []byte("1"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "xattr"), "user.b", []byte("2"), 0))
}

// setCompareTimes gives every path under dir compareBaseTime, so that only
// what a test case changes differs.
func setCompareTimes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(compareBaseTime.UnixNano()), unix.NsecToTimespec(compareBaseTime.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setCompareMtime(t *testing.T, p string, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestCompareTrees(t *testing.T) {
	RequireRoot(t) // chown, mknod and trusted.* xattrs
	type mutation func(t *testing.T, got string)
	check := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		change mutation // applied to got, before the mtimes are reset
		after  mutation // applied to got after the mtimes are reset
		want   []string
	}{
		{name: "identical"},
		{
			name:   "missing file",
			change: func(t *testing.T, got string) { check(t, os.Remove(filepath.Join(got, "dir", "nested"))) },
			want:   []string{"missing in got: /dir/nested"},
		},
		{
			name:   "missing dir lists every path below",
			change: func(t *testing.T, got string) { check(t, os.RemoveAll(filepath.Join(got, "dir"))) },
			want:   []string{"missing in got: /dir", "missing in got: /dir/nested"},
		},
		{
			name:   "extra file",
			change: func(t *testing.T, got string) { check(t, os.WriteFile(filepath.Join(got, "extra"), nil, 0o644)) },
			want:   []string{"extra in got: /extra"},
		},
		{
			name: "type",
			change: func(t *testing.T, got string) {
				check(t, os.Remove(filepath.Join(got, "file")))
				check(t, os.Mkdir(filepath.Join(got, "file"), 0o644))
			},
			want: []string{"/file: type file != dir"},
		},
		{
			name:   "permission bits",
			change: func(t *testing.T, got string) { check(t, os.Chmod(filepath.Join(got, "file"), 0o600)) },
			want:   []string{"/file: mode 0644 != 0600"},
		},
		{
			name: "setuid",
			change: func(t *testing.T, got string) {
				check(t, os.Chmod(filepath.Join(got, "file"), 0o644|os.ModeSetuid))
			},
			want: []string{"/file: mode 0644 != 4644"},
		},
		{
			name: "setgid and sticky",
			change: func(t *testing.T, got string) {
				check(t, os.Chmod(filepath.Join(got, "dir"), 0o755|os.ModeSetgid|os.ModeSticky))
			},
			want: []string{"/dir: mode 0755 != 3755"},
		},
		{
			name:   "uid",
			change: func(t *testing.T, got string) { check(t, os.Lchown(filepath.Join(got, "link"), 1000, -1)) },
			want:   []string{"/link: uid 0 != 1000"},
		},
		{
			name:   "gid",
			change: func(t *testing.T, got string) { check(t, os.Lchown(filepath.Join(got, "fifo"), -1, 65534)) },
			want:   []string{"/fifo: gid 0 != 65534"},
		},
		{
			name: "size",
			change: func(t *testing.T, got string) {
				check(t, os.WriteFile(filepath.Join(got, "file"), []byte("hello!"), 0o644))
			},
			want: []string{"/file: size 5 != 6"},
		},
		{
			name: "content of the same size",
			change: func(t *testing.T, got string) {
				check(t, os.WriteFile(filepath.Join(got, "file"), []byte("jello"), 0o644))
			},
			want: []string{"/file: sha256 " + sha256Hex("hello") + " != " + sha256Hex("jello")},
		},
		{
			name: "symlink target",
			change: func(t *testing.T, got string) {
				check(t, os.Remove(filepath.Join(got, "link")))
				check(t, os.Symlink("elif", filepath.Join(got, "link")))
			},
			want: []string{`/link: symlink target "file" != "elif"`},
		},
		{
			name: "symlink target of another length",
			change: func(t *testing.T, got string) {
				check(t, os.Remove(filepath.Join(got, "link")))
				check(t, os.Symlink("dir", filepath.Join(got, "link")))
			},
			want: []string{"/link: size 4 != 3", `/link: symlink target "file" != "dir"`},
		},
		{
			name: "device numbers",
			change: func(t *testing.T, got string) {
				p := filepath.Join(got, "chardev")
				check(t, os.Remove(p))
				check(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
				check(t, os.Chmod(p, 0o666))
			},
			want: []string{"/chardev: rdev 1:3 != 1:5"},
		},
		{
			name: "xattr value",
			change: func(t *testing.T, got string) {
				check(t, unix.Lsetxattr(filepath.Join(got, "xattr"), "user.a", []byte("one"), 0))
			},
			want: []string{`/xattr: xattr user.a "1" != "one"`},
		},
		{
			name: "xattr missing and extra",
			change: func(t *testing.T, got string) {
				check(t, unix.Lremovexattr(filepath.Join(got, "xattr"), "user.b"))
				check(t, unix.Lsetxattr(filepath.Join(got, "file"), "user.c", []byte("3"), 0))
			},
			want: []string{"/file: xattr user.c extra in got", "/xattr: xattr user.b missing in got"},
		},
		{
			name: "trusted and security xattrs are ignored",
			change: func(t *testing.T, got string) {
				check(t, unix.Lsetxattr(filepath.Join(got, "file"), "trusted.overlay.opaque", []byte("y"), 0))
				check(t, unix.Lsetxattr(filepath.Join(got, "dir"), "security.lazyfs", []byte("label"), 0))
			},
		},
		{
			name: "mtime",
			after: func(t *testing.T, got string) {
				setCompareMtime(t, filepath.Join(got, "link"), compareBaseTime.Add(time.Second))
			},
			want: []string{"/link: mtime 2024-05-06T07:08:09Z != 2024-05-06T07:08:10Z"},
		},
		{
			name: "sub-second mtime is ignored",
			after: func(t *testing.T, got string) {
				setCompareMtime(t, filepath.Join(got, "file"), compareBaseTime.Add(600*time.Millisecond))
			},
		},
		{
			name:  "mtime of the root is ignored",
			after: func(t *testing.T, got string) { setCompareMtime(t, got, compareBaseTime.Add(time.Hour)) },
		},
		{
			name: "several differences of one path",
			change: func(t *testing.T, got string) {
				p := filepath.Join(got, "dir", "nested")
				check(t, os.Chmod(p, 0o640))
				check(t, os.Chown(p, 1, 2))
			},
			after: func(t *testing.T, got string) {
				setCompareMtime(t, filepath.Join(got, "dir", "nested"), compareBaseTime.Add(-time.Hour))
			},
			want: []string{
				"/dir/nested: mode 0600 != 0640",
				"/dir/nested: uid 0 != 1",
				"/dir/nested: gid 0 != 2",
				"/dir/nested: mtime 2024-05-06T07:08:09Z != 2024-05-06T06:08:09Z",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, got := t.TempDir(), t.TempDir()
			buildCompareTree(t, want)
			buildCompareTree(t, got)
			if tc.change != nil {
				tc.change(t, got)
			}
			setCompareTimes(t, want)
			setCompareTimes(t, got)
			if tc.after != nil {
				tc.after(t, got)
			}
			diffs, err := CompareTrees(want, got)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(diffs, tc.want) {
				t.Errorf("differences:\n  %s\nwant:\n  %s", strings.Join(diffs, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestCompareTreesWalkError(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := CompareTrees(missing, dir); err == nil {
		t.Error("missing want: no error")
	}
	if _, err := CompareTrees(dir, missing); err == nil {
		t.Error("missing got: no error")
	}
}

// TestCompareTreesNeverFollowsSymlinks guards against comparing what a
// symlink points to (possibly outside the tree) instead of the link itself.
func TestCompareTreesNeverFollowsSymlinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, got := t.TempDir(), t.TempDir()
	for _, dir := range []string{want, got} {
		if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
			t.Fatal(err)
		}
	}
	setCompareTimes(t, want)
	setCompareTimes(t, got)
	diffs, err := CompareTrees(want, got)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("diffs %v, err %v", diffs, err)
	}
	// A dangling symlink is fine too.
	if err := os.Symlink("/nonexistent", filepath.Join(got, "dangling")); err != nil {
		t.Fatal(err)
	}
	diffs, err = CompareTrees(want, got)
	if err != nil || !slices.Equal(diffs, []string{"extra in got: /dangling"}) {
		t.Fatalf("diffs %v, err %v", diffs, err)
	}
}
