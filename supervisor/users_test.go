package supervisor

import (
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestMountUsers(t *testing.T) {
	const mp = "/var/lib/lazyfs/snapshots/12/fs"
	for _, tc := range []struct {
		name  string
		infos []*mountinfo.Info
		want  bool
	}{
		{"alone", []*mountinfo.Info{fuse(mp, 40)}, false},
		{"lower dir of an overlay", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=/var/lib/lazyfs/snapshots/13/fs:" + mp + ",upperdir=/u,workdir=/w")}, true},
		// containerd shortens long options by changing directory first.
		{"relative lower dir", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=13/fs:12/fs,upperdir=/var/lib/lazyfs/snapshots/20/fs,workdir=/var/lib/lazyfs/snapshots/20/work")}, true},
		{"relative lower dir of a read-only view", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=13/fs:12/fs")}, true},
		{"relative lower dir with a relative upper dir", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=13/fs:12/fs,upperdir=20/fs,workdir=20/work")}, true},
		// The same relative name in another snapshotter's container.
		{"relative lower dir of another root", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=13/fs:12/fs,upperdir=/other/snapshots/20/fs,workdir=/other/snapshots/20/work")}, false},
		{"relative lower dir under a sibling root", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=13/fs:12/fs,upperdir=/var/lib/lazyfs/snapshots2/20/fs,workdir=/w")}, false},
		{"lowerdir+ of the new mount API", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir+=" + mp + ",upperdir=/u,workdir=/w")}, true},
		{"datadir+ of the new mount API", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir+=/x/13/fs,datadir+=" + mp + ",upperdir=/u,workdir=/w")}, true},
		// Only the lower and data dirs are built on.
		{"the path in another option", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=/x/13/fs,upperdir=/u,workdir=" + mp)}, false},
		{"another layer's overlay", []*mountinfo.Info{fuse(mp, 40),
			overlay("lowerdir=/var/lib/lazyfs/snapshots/112/fsx:/x/2/fs,upperdir=/u,workdir=/w")}, false},
		{"escaped colon in another path", []*mountinfo.Info{fuse(mp, 40),
			overlay(`lowerdir=/a\:12/fs,upperdir=/u,workdir=/w`)}, false},
		{"a trailing backslash in another path", []*mountinfo.Info{fuse(mp, 40),
			overlay(`lowerdir=/a\`)}, false},
		{"bind mount of the layer (a one-layer view)", []*mountinfo.Info{fuse(mp, 40), fuse("/run/c/rootfs", 40)}, true},
		{"another FUSE mount", []*mountinfo.Info{fuse(mp, 40), fuse("/run/c/rootfs", 41)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newMountUsers(tc.infos).uses(mp); got != tc.want {
				t.Errorf("uses(%s) = %v, want %v", mp, got, tc.want)
			}
		})
	}
}

func fuse(mp string, minor int) *mountinfo.Info {
	return &mountinfo.Info{Mountpoint: mp, FSType: "fuse.lazyfs", Minor: minor}
}

func overlay(opts string) *mountinfo.Info {
	return &mountinfo.Info{Mountpoint: "/run/c/rootfs", FSType: "overlay", Major: 0, Minor: 99, VFSOptions: "rw," + opts}
}

// TestMountUsersEscapedPaths: a lower dir whose path holds a ',' or ':'
// (shown escaped with a backslash by overlayfs) is still the layer's.
func TestMountUsersEscapedPaths(t *testing.T) {
	for _, mp := range []string{"/var/lib/lazy,fs/snapshots/12/fs", "/var/lib/lazy:fs/snapshots/12/fs"} {
		escaped := strings.NewReplacer(",", `\,`, ":", `\:`).Replace(mp)
		for _, opts := range []string{
			"lowerdir=/x/13/fs:" + escaped + ",upperdir=/u,workdir=/w",
			"lowerdir=" + escaped + ":/x/13/fs,upperdir=/u,workdir=/w",
		} {
			if !newMountUsers([]*mountinfo.Info{fuse(mp, 40), overlay(opts)}).uses(mp) {
				t.Errorf("%s is not seen used by an overlay with %s", mp, opts)
			}
		}
	}
}
