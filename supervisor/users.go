package supervisor

import (
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// mountUsers tells which FUSE mounts something else on the host builds on:
// the lower dir of an overlay (a container's rootfs) or a bind mount of the
// same filesystem (a one-layer view). umount(2) cannot tell: overlayfs keeps
// private clones of its lower mounts, so a plain unmount of a layer under a
// running container succeeds (measured on Linux 6.18), and detaching it
// from its worker then breaks the container (SIGBUS on the next exec).
// Only the mount table is read: a mountpoint whose worker may be down is
// never touched.
type mountUsers struct {
	// lowers are the overlays' absolute lower dirs.
	lowers map[string]bool
	// relLowers are the lower dirs the mounter shortened to relative ones
	// by changing directory first (containerd does, past a page of
	// options), each with the upper dirs of the overlays naming it ("" for
	// an overlay without one: a read-only view).
	relLowers map[string][]string
	// mountpoint → device of the filesystem mounted there, and how many
	// mounts show that device.
	devs  map[string]dev
	count map[dev]int
}

type dev struct{ major, minor int }

// readMountUsers reads the mount table of this process's mount namespace.
func readMountUsers() (*mountUsers, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	return newMountUsers(infos), nil
}

func newMountUsers(infos []*mountinfo.Info) *mountUsers {
	u := &mountUsers{lowers: map[string]bool{}, relLowers: map[string][]string{}, devs: map[string]dev{}, count: map[dev]int{}}
	for _, in := range infos {
		d := dev{in.Major, in.Minor}
		u.devs[in.Mountpoint] = d
		u.count[d]++
		if in.FSType != "overlay" {
			continue
		}
		var lowers []string
		upper := ""
		for _, opt := range splitEscaped(in.VFSOptions, ',') {
			key, val, ok := strings.Cut(opt, "=")
			switch {
			case !ok:
			case key == "upperdir":
				upper = filepath.Clean(unescape(val))
			// lowerdir= lists every layer; lowerdir+= and datadir+= (the
			// new mount API) name one each.
			case key == "lowerdir" || key == "lowerdir+" || key == "datadir+":
				for _, dir := range splitEscaped(val, ':') {
					lowers = append(lowers, filepath.Clean(unescape(dir)))
				}
			}
		}
		for _, dir := range lowers {
			if filepath.IsAbs(dir) {
				u.lowers[dir] = true
			} else {
				u.relLowers[dir] = append(u.relLowers[dir], upper)
			}
		}
	}
	return u
}

// uses tells whether an overlay or a second mount builds on the mount at
// mountpoint.
//
// A relative lower dir that the mountpoint ends with is resolved against
// the overlay's upper dir: the mounter shortened the lower dirs to what
// follows their common directory, and a container's upper dir lies in the
// same snapshotter's directory as its lowers, so the overlay builds on this
// mountpoint only if its upper dir is under the same base. Another
// snapshotter's container whose relative lower dir happens to read the same
// ("12/fs") is not a use. Without an absolute upper dir (a read-only view)
// it counts as a use: keeping a layer nobody uses costs a worker until the
// next start, unmounting a used one breaks a container.
func (u *mountUsers) uses(mountpoint string) bool {
	mountpoint = filepath.Clean(mountpoint)
	if d, ok := u.devs[mountpoint]; ok && u.count[d] > 1 {
		return true
	}
	if u.lowers[mountpoint] {
		return true
	}
	for dir, uppers := range u.relLowers {
		base, ok := strings.CutSuffix(mountpoint, "/"+dir)
		if !ok {
			continue
		}
		for _, upper := range uppers {
			if !filepath.IsAbs(upper) || strings.HasPrefix(upper, base+"/") {
				return true
			}
		}
	}
	return false
}

// splitEscaped splits s at sep, except where sep is escaped with a
// backslash (how overlayfs shows a ',' or ':' inside a path).
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslashes splitEscaped left.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
