package containerdconf

import (
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
)

// containerd's plugin ids whose keys lazyfs sets or checks.
const (
	criV2Images     = "io.containerd.cri.v1.images"     // 2.x: CRI's image service
	criV1           = "io.containerd.grpc.v1.cri"       // 1.6/1.7: the CRI plugin
	transferService = "io.containerd.transfer.v1.local" // 2.x: pulls of ctr and CRI
	snapshotterType = "snapshot"
	// overlayfs is the snapshotter every other image keeps unpacking with.
	overlayfs = "overlayfs"
)

// bareKey is what a snapshotter name may be: it is written unquoted in a
// table header.
var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Params are what containerd must know of this node's lazyfs.
type Params struct {
	// Name is the proxy plugin's name, the snapshotter name pulls ask for.
	Name string
	// Address is lazyfs's gRPC socket (lazyfs's `address`).
	Address string
	// Root is lazyfs's `root`: the directory CRI reports as the image
	// file system.
	Root string
	// Platform is the node's platform for the transfer service's unpack
	// entries, e.g. "linux/amd64".
	Platform string
	// ConfigVersion is the config version of a 2.x drop-in: the one the
	// installed containerd's `config default` writes, so that it is not
	// migrated (and warned about) at every start. 0 means 3.
	ConfigVersion int
	// HostsDir is lazyfs's `[registry] config_path`.
	HostsDir string
}

func (p Params) validate() error {
	for _, f := range []struct{ name, value string }{
		{"snapshotter name", p.Name}, {"address", p.Address}, {"root", p.Root}, {"platform", p.Platform},
	} {
		if f.value == "" {
			return fmt.Errorf("%s is empty: %w", f.name, errdefs.ErrInvalidArgument)
		}
	}
	if !bareKey.MatchString(p.Name) {
		return fmt.Errorf("snapshotter name %q: only letters, digits, '-' and '_' (a bare TOML key): %w", p.Name, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(p.Address) || !filepath.IsAbs(p.Root) {
		return fmt.Errorf("address %q and root %q must be absolute paths: %w", p.Address, p.Root, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ImageFSPath is the directory containerd's CRI reports to the kubelet as
// the image file system when its snapshotter is lazyfs: 1.6 ignores the
// proxy plugin's exports and names a directory under its own root, which
// nothing creates (snapshotterctl config containerd --write links it to
// lazyfs's root); 1.7 and 2.x take the exported root.
func ImageFSPath(v Version, containerdRoot string, p Params) string {
	if v.Major == 1 && v.Minor < 7 {
		return filepath.Join(containerdRoot, "io.containerd.snapshotter.v1."+p.Name)
	}
	return p.Root
}
