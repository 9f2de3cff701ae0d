package failover_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lazyfs/lazyfs/failover"
	"github.com/lazyfs/lazyfs/internal/testreq"
)

// mountEntry reads the mount at dir from /proc/self/mountinfo, never from the
// mountpoint itself: nothing answers this connection's INIT, so a stat of
// dir would block.
func mountEntry(t *testing.T, dir string) *mountinfo.Info {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) == 0 {
		return nil
	}
	return infos[len(infos)-1]
}

func TestOpenFuseIsCloseOnExec(t *testing.T) {
	testreq.RequireFUSE(t)
	fd, err := failover.OpenFuse()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Error("fd from OpenFuse lacks FD_CLOEXEC")
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("fd access mode = %#o, want O_RDWR", fl&unix.O_ACCMODE)
	}
}

func TestMountAndUnmount(t *testing.T) {
	testreq.RequireFUSE(t)
	for _, lazy := range []bool{false, true} {
		name := "eager"
		if lazy {
			name = "lazy"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fd, err := failover.OpenFuse()
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := failover.Mount(fd, dir, "lazyfs-test", "lazyfs"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = failover.Unmount(dir, true) })

			m := mountEntry(t, dir)
			if m == nil {
				t.Fatalf("%s not in mountinfo after Mount", dir)
			}
			if m.FSType != "fuse.lazyfs" || m.Source != "lazyfs-test" {
				t.Errorf("mount type %q source %q, want fuse.lazyfs lazyfs-test", m.FSType, m.Source)
			}
			opts := "," + m.Options + ","
			for _, want := range []string{"ro", "nosuid", "nodev"} {
				if !strings.Contains(opts, ","+want+",") {
					t.Errorf("mount options %q lack %q", m.Options, want)
				}
			}
			super := "," + m.VFSOptions + ","
			for _, want := range []string{"user_id=0", "group_id=0", "allow_other"} {
				if !strings.Contains(super, ","+want+",") {
					t.Errorf("superblock options %q lack %q", m.VFSOptions, want)
				}
			}

			if err := failover.Unmount(dir, lazy); err != nil {
				t.Fatal(err)
			}
			if m := mountEntry(t, dir); m != nil {
				t.Fatalf("%s still mounted after Unmount", dir)
			}
			// Repeating is harmless: "not mounted" is success.
			if err := failover.Unmount(dir, lazy); err != nil {
				t.Errorf("second Unmount: %v", err)
			}
		})
	}
}

func TestUnmountMissingPathIsNotAnError(t *testing.T) {
	testreq.RequireFUSE(t)
	if err := failover.Unmount(filepath.Join(t.TempDir(), "missing"), false); err != nil {
		t.Fatal(err)
	}
}

func TestMountErrors(t *testing.T) {
	testreq.RequireFUSE(t)
	fd, err := failover.OpenFuse()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	missing := filepath.Join(t.TempDir(), "missing")

	for _, tc := range []struct {
		name           string
		fd             int
		dir            string
		fsname, sub    string
		class          error
		wantErrnoMatch error
	}{
		{"missing mountpoint", fd, missing, "lazyfs", "lazyfs", errdefs.ErrNotFound, unix.ENOENT},
		{"negative fd", -1, t.TempDir(), "lazyfs", "lazyfs", errdefs.ErrInvalidArgument, nil},
		{"empty subtype", fd, t.TempDir(), "lazyfs", "", errdefs.ErrInvalidArgument, nil},
		{"subtype with comma", fd, t.TempDir(), "lazyfs", "a,b", errdefs.ErrInvalidArgument, nil},
		{"empty fsname", fd, t.TempDir(), "", "lazyfs", errdefs.ErrInvalidArgument, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := failover.Mount(tc.fd, tc.dir, tc.fsname, tc.sub)
			if err == nil {
				_ = failover.Unmount(tc.dir, true)
				t.Fatal("Mount succeeded")
			}
			if !errors.Is(err, tc.class) {
				t.Errorf("error %v is not %v", err, tc.class)
			}
			if tc.wantErrnoMatch != nil && !errors.Is(err, tc.wantErrnoMatch) {
				t.Errorf("error %v is not %v", err, tc.wantErrnoMatch)
			}
			if !strings.Contains(err.Error(), tc.dir) {
				t.Errorf("error %q does not name the mountpoint %s", err, tc.dir)
			}
		})
	}
}
