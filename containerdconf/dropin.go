package containerdconf

import (
	"bytes"
	"fmt"
	"strconv"
	"text/template"
)

// DropInName is the file name of the 2.x drop-in under containerd's conf.d.
const DropInName = "lazyfs.toml"

// DefaultConfDir is where containerd 2.x's default `imports` looks.
const DefaultConfDir = "/etc/containerd/conf.d"

// dropIn is the 2.x drop-in. Pulls reach lazyfs with the labels it needs
// through the transfer service (the recommended way: CRI keeps its default
// `disable_snapshot_annotations = true`, the path containerd 2.x develops);
// the other way is written down as a comment, not set, since setting both
// makes CRI take its older local pull path and log a warning at every start.
var dropIn = template.Must(template.New("dropin").Parse(`# lazyfs for containerd {{.Version}} (written by snapshotterctl config containerd).
# containerd reads it through ` + "`imports`" + ` (2.x's default config imports
# {{.ConfDir}}/*.toml); restart containerd after a change, and check with
# ` + "`snapshotterctl doctor`" + `.
version = {{.ConfigVersion}}

# lazyfs runs out of process: containerd dials its gRPC socket when a pull or
# a container first needs it. The lazyfs-snapshotter unit starts before
# containerd (containerd.service.d/lazyfs.conf), so the first pulls find it.
[proxy_plugins.{{.Bare}}]
  type = "snapshot"
  address = {{.Address}}
  [proxy_plugins.{{.Bare}}.exports]
    # lazyfs's root: CRI reports this directory's file system to the
    # kubelet as the image file system (disk-pressure eviction, image GC).
    root = {{.Root}}
    # The transfer service passes each layer's labels (image ref, layer
    # digest; the eStargz TOC digest comes with the layer) to lazyfs only
    # with this set. Without it every layer is downloaded in full, silently.
    enable_remote_snapshot_annotations = "true"

# Kubernetes (CRI) pulls and runs images with lazyfs. CRI's
# disable_snapshot_annotations keeps its default (true): pulls go through
# the transfer service below. The other way, disable_snapshot_annotations =
# false, makes CRI add the labels itself on its older local pull path (it
# logs a warning at every start); do not set both.
[plugins."io.containerd.cri.v1.images"]
  snapshotter = {{.Name}}

# The transfer service (ctr image pull, CRI) unpacks only for the
# platform/snapshotter pairs listed here. A non-empty list replaces
# containerd's default, so overlayfs stays listed; without the lazyfs entry
# every such pull fails with "no unpack platforms defined".
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = {{.Platform}}
  snapshotter = "overlayfs"
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = {{.Platform}}
  snapshotter = {{.Name}}
`))

// DropIn returns the drop-in that configures containerd 2.x (v) for lazyfs.
func DropIn(v Version, p Params) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if !v.V2() {
		return nil, fmt.Errorf("containerd %s takes its keys merged into its config file, not a drop-in", v)
	}
	cv := p.ConfigVersion
	if cv == 0 {
		cv = 3
	}
	var b bytes.Buffer
	err := dropIn.Execute(&b, map[string]any{
		"Version":       v.String(),
		"ConfDir":       DefaultConfDir,
		"ConfigVersion": cv,
		// Quoted as TOML basic strings (Go's quoting is a subset for
		// printable text; Params.validate keeps control characters out of
		// the paths that matter).
		"Bare":     p.Name,
		"Name":     strconv.Quote(p.Name),
		"Address":  strconv.Quote(p.Address),
		"Root":     strconv.Quote(p.Root),
		"Platform": strconv.Quote(p.Platform),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to render the containerd drop-in: %w", err)
	}
	return b.Bytes(), nil
}
