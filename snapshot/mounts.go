package snapshot

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
)

// mounts returns what makes a snapshot visible:
//   - no parent: a bind mount of its own directory (overlay needs a lower dir);
//   - a view of one parent: a read-only bind mount of that parent;
//   - otherwise an overlay whose lower dirs are the parents, nearest first.
func (s *Snapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	if len(snap.ParentIDs) == 0 {
		mode := "rw"
		if snap.Kind == snapshots.KindView {
			mode = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: s.upperPath(snap.ID), Options: []string{mode, "rbind"}}}
	}
	if snap.Kind == snapshots.KindView && len(snap.ParentIDs) == 1 {
		return []mount.Mount{{Type: "bind", Source: s.upperPath(snap.ParentIDs[0]), Options: []string{"ro", "rbind"}}}
	}

	var options []string
	if snap.Kind == snapshots.KindActive {
		options = append(options,
			"workdir="+s.workPath(snap.ID),
			"upperdir="+s.upperPath(snap.ID),
		)
	}
	lowers := make([]string, len(snap.ParentIDs))
	for i, id := range snap.ParentIDs {
		lowers[i] = s.upperPath(id)
	}
	options = append(options, "lowerdir="+strings.Join(lowers, ":"))
	options = append(options, s.mountOptions...)
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}
}

// overlayOptions returns the options added to every overlay mount.
// index=off: with the inode index on, overlayfs refuses to mount a lower dir
// again with another upper dir, which is exactly what containers sharing an
// image do; containerd's overlayfs snapshotter turns it off for the same reason.
func overlayOptions() []string {
	if _, err := os.Stat("/sys/module/overlay/parameters/index"); err == nil {
		return []string{"index=off"}
	}
	return nil
}

func ownerOf(fi os.FileInfo) (uid, gid int) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		panic(fmt.Sprintf("unexpected stat type %T", fi.Sys()))
	}
	return int(st.Uid), int(st.Gid)
}
