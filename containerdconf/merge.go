package containerdconf

import (
	"bytes"
	"fmt"

	"github.com/containerd/errdefs"
	toml "github.com/pelletier/go-toml/v2"
)

// mergedHeader opens a config file MergeV1 wrote: the merge keeps every
// key and value but not the comments, which stay in the backup.
const mergedHeader = `# containerd configuration with lazyfs's keys merged in by
# snapshotterctl config containerd --write (comments of the previous file are
# in its backup). Check with snapshotterctl doctor after restarting containerd.
`

// MergeV1 merges lazyfs's keys into a containerd 1.6/1.7 config file
// (version 2): the proxy plugin, and CRI's snapshotter and
// disable_snapshot_annotations in the CRI table that is already there.
// Every other key is kept; no table is duplicated (containerd 1.x refuses
// "duplicated tables") and none is replaced. An empty or missing file
// (existing == nil) gives a file with lazyfs's keys alone, which 1.x
// completes with its defaults. A version 1 file is refused: its plugin
// names differ and 1.x cannot migrate it.
func MergeV1(v Version, existing []byte, p Params) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if v.V2() {
		return nil, fmt.Errorf("containerd %s takes a drop-in (DropIn), not merged keys", v)
	}
	cfg := map[string]any{}
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := toml.Unmarshal(existing, &cfg); err != nil {
			return nil, fmt.Errorf("containerd config is not valid TOML: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		switch ver := cfg["version"].(type) {
		case int64:
			if ver != 2 {
				return nil, fmt.Errorf("containerd config has version = %d; containerd %s needs version = 2: %w", ver, v, errdefs.ErrInvalidArgument)
			}
		default:
			return nil, fmt.Errorf("containerd config has no version = 2 (a version 1 config names plugins differently; write it as version 2 first): %w", errdefs.ErrInvalidArgument)
		}
	}
	cfg["version"] = int64(2)

	proxy, err := table(cfg, "proxy_plugins", p.Name)
	if err != nil {
		return nil, err
	}
	proxy["type"] = snapshotterType
	proxy["address"] = p.Address
	exports, err := table(proxy, "exports")
	if err != nil {
		return nil, err
	}
	// 1.6 ignores exports; 1.7's CRI takes root as the image file system.
	exports["root"] = p.Root
	exports["enable_remote_snapshot_annotations"] = "true"

	cri, err := table(cfg, "plugins", criV1, "containerd")
	if err != nil {
		return nil, err
	}
	cri["snapshotter"] = p.Name
	// CRI 1.x passes each layer's labels to Prepare only with this false.
	cri["disable_snapshot_annotations"] = false

	out, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to write the merged containerd config: %w", err)
	}
	return append([]byte(mergedHeader+"\n"), out...), nil
}

// table returns the table at path under m, creating the missing ones; a
// key on the path that holds something else than a table is an error
// naming it.
func table(m map[string]any, path ...string) (map[string]any, error) {
	for i, k := range path {
		next, ok := m[k]
		if !ok {
			t := map[string]any{}
			m[k] = t
			m = t
			continue
		}
		t, ok := next.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("containerd config key %s is not a table: %w", keyName(path[:i+1]...), errdefs.ErrInvalidArgument)
		}
		m = t
	}
	return m, nil
}
