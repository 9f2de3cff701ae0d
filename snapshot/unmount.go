package snapshot

import (
	"fmt"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// detachMountsUnder lazily unmounts every mount at or below dir, deepest
// first. It reads /proc/self/mountinfo and never touches the mountpoints
// themselves: a stat on a FUSE mount whose worker is gone would block.
func detachMountsUnder(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("failed to read mount table: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("failed to unmount %s: %w", m.Mountpoint, err)
		}
	}
	return nil
}
