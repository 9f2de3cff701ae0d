package containerdconf

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	toml "github.com/pelletier/go-toml/v2"
)

// Severity says what a finding means for the node.
type Severity int

const (
	// Pass: the setting is right.
	Pass Severity = iota
	// Warn: lazyfs works, something is worth knowing.
	Warn
	// Fail: pulls do not reach lazyfs, or not lazily.
	Fail
)

func (s Severity) String() string {
	switch s {
	case Pass:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// MarshalText writes the severity as doctor prints it: "ok", "warn", "FAIL".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is the verdict on one setting.
type Finding struct {
	Severity Severity `json:"severity"`
	// Check names what was checked, e.g. "CRI snapshotter".
	Check string `json:"check"`
	// Key is the containerd (or lazyfs) key to change, as written in its
	// config file; empty when no key fixes it.
	Key string `json:"key,omitempty"`
	// Message says what was found and, for a problem, what to set.
	Message string `json:"message"`
}

// Loaded is a containerd configuration as containerd loaded it (`containerd
// config dump`: defaults, imports and migration applied).
type Loaded struct {
	tree map[string]any
}

// ParseLoaded reads `containerd config dump`'s output.
func ParseLoaded(dump []byte) (Loaded, error) {
	l := Loaded{tree: map[string]any{}}
	if err := toml.Unmarshal(dump, &l.tree); err != nil {
		return Loaded{}, fmt.Errorf("containerd config dump is not valid TOML: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	return l, nil
}

// Root is containerd's root directory.
func (l Loaded) Root() string { s, _ := l.get("root").(string); return s }

func (l Loaded) get(path ...string) any {
	var cur any = l.tree
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func (l Loaded) str(path ...string) (string, bool) {
	s, ok := l.get(path...).(string)
	return s, ok
}

// keyName writes a key path as in a containerd config file: segments with
// dots quoted (plugins."io.containerd.grpc.v1.cri".containerd).
func keyName(path ...string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		if strings.ContainsAny(p, ". ") {
			p = `"` + p + `"`
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

// setting names a key inside a table the way an operator edits it:
// [table] key.
func setting(table []string, key string) string {
	return "[" + keyName(table...) + "] " + key
}

// Check checks a loaded containerd v's configuration against p: the proxy
// plugin, CRI's snapshotter and annotation settings, the transfer
// service's unpack platforms (2.x), and the hosts dirs containerd and
// lazyfs read. Every finding that is not Pass names the key to change.
func Check(v Version, l Loaded, p Params) []Finding {
	var out []Finding
	out = append(out, checkProxy(v, l, p)...)
	out = append(out, checkCRI(v, l, p)...)
	if v.V2() {
		out = append(out, checkUnpack(l, p)...)
	}
	out = append(out, checkHostsDirs(v, l, p)...)
	return out
}

func checkProxy(v Version, l Loaded, p Params) []Finding {
	tbl := []string{"proxy_plugins", p.Name}
	if _, ok := l.get(tbl...).(map[string]any); !ok {
		return []Finding{{Fail, "proxy plugin", "[" + keyName(tbl...) + "]",
			fmt.Sprintf("containerd has no snapshotter named %q: add the [%s] table (snapshotterctl config containerd)", p.Name, keyName(tbl...))}}
	}
	var out []Finding
	if t, _ := l.str(append(tbl, "type")...); t != snapshotterType {
		out = append(out, Finding{Fail, "proxy plugin type", setting(tbl, "type"), fmt.Sprintf("is %q, must be %q", t, snapshotterType)})
	}
	if a, _ := l.str(append(tbl, "address")...); a != p.Address {
		out = append(out, Finding{Fail, "proxy plugin address", setting(tbl, "address"),
			fmt.Sprintf("is %q but lazyfs listens on %q (lazyfs's address): set it to %q", a, p.Address, p.Address)})
	} else {
		out = append(out, Finding{Pass, "proxy plugin", "", fmt.Sprintf("[%s] dials %s", keyName(tbl...), a)})
	}
	exports := append(tbl[:len(tbl):len(tbl)], "exports")
	if v.V2() {
		if a, _ := l.str(append(exports, "enable_remote_snapshot_annotations")...); a != "true" {
			out = append(out, Finding{Fail, "remote snapshot labels", setting(exports, "enable_remote_snapshot_annotations"),
				`not "true": the transfer service sends no layer labels, so every layer is downloaded in full; set it to "true"`})
		} else {
			out = append(out, Finding{Pass, "remote snapshot labels", "", "the transfer service passes the layer labels"})
		}
	}
	if v.V2() || v.Minor >= 7 {
		if r, _ := l.str(append(exports, "root")...); r != p.Root {
			out = append(out, Finding{Warn, "image file system", setting(exports, "root"),
				fmt.Sprintf("is %q: CRI reports it to the kubelet as the image file system; set it to lazyfs's root %q", r, p.Root)})
		}
	}
	return out
}

// criTable is the table holding CRI's snapshotter setting.
func criTable(v Version) []string {
	if v.V2() {
		return []string{"plugins", criV2Images}
	}
	return []string{"plugins", criV1, "containerd"}
}

func criDisabled(v Version, l Loaded) bool {
	ids, _ := l.get("disabled_plugins").([]any)
	want := criV1
	if v.V2() {
		want = criV2Images
	}
	for _, id := range ids {
		if s, _ := id.(string); s == want || s == criV1 {
			return true
		}
	}
	return false
}

func checkCRI(v Version, l Loaded, p Params) []Finding {
	if criDisabled(v, l) {
		return []Finding{{Warn, "CRI", "disabled_plugins", "CRI is disabled: Kubernetes cannot use this containerd (fine for ctr and snapshotterctl pulls)"}}
	}
	tbl := criTable(v)
	var out []Finding
	if s, _ := l.str(append(tbl, "snapshotter")...); s != p.Name {
		out = append(out, Finding{Fail, "CRI snapshotter", setting(tbl, "snapshotter"),
			fmt.Sprintf("is %q: Kubernetes pulls unpack with it instead of lazyfs; set it to %q", s, p.Name)})
	} else {
		out = append(out, Finding{Pass, "CRI snapshotter", "", fmt.Sprintf("CRI pulls with %q", s)})
	}
	// Missing means containerd's default, true on every line.
	disabled := true
	if b, ok := l.get(append(tbl, "disable_snapshot_annotations")...).(bool); ok {
		disabled = b
	}
	switch {
	case !v.V2() && disabled:
		out = append(out, Finding{Fail, "CRI snapshot annotations", setting(tbl, "disable_snapshot_annotations"),
			"is true: CRI sends no layer labels, so every layer is downloaded in full; set it to false"})
	case !v.V2():
		out = append(out, Finding{Pass, "CRI snapshot annotations", "", "CRI passes the layer labels"})
	case !disabled:
		out = append(out, Finding{Warn, "CRI snapshot annotations", setting(tbl, "disable_snapshot_annotations"),
			"is false: CRI takes its older local pull path (a warning at every start); the transfer service is the recommended way, so remove the key"})
	default:
		out = append(out, Finding{Pass, "CRI snapshot annotations", "", "CRI pulls through the transfer service"})
	}
	return out
}

func checkUnpack(l Loaded, p Params) []Finding {
	tbl := []string{"plugins", transferService}
	key := "[[" + keyName(append(tbl, "unpack_config")...) + "]]"
	entries, _ := l.get(append(tbl, "unpack_config")...).([]any)
	var lazy, overlay bool
	for _, e := range entries {
		m, _ := e.(map[string]any)
		sn, _ := m["snapshotter"].(string)
		pl, _ := m["platform"].(string)
		if pl != p.Platform {
			continue
		}
		lazy = lazy || sn == p.Name
		overlay = overlay || sn == overlayfs
	}
	var out []Finding
	if !lazy {
		out = append(out, Finding{Fail, "unpack platforms", key,
			fmt.Sprintf(`no entry with platform = %q and snapshotter = %q: pulls with lazyfs fail with "no unpack platforms defined"`, p.Platform, p.Name)})
	} else {
		out = append(out, Finding{Pass, "unpack platforms", "", fmt.Sprintf("the transfer service unpacks %s with %s", p.Platform, p.Name)})
	}
	if lazy && !overlay {
		out = append(out, Finding{Warn, "unpack platforms", key,
			fmt.Sprintf(`no entry for %q on %s: the list replaces the default, so pulls with overlayfs fail`, overlayfs, p.Platform)})
	}
	return out
}

// checkHostsDirs compares the hosts.toml dirs containerd pulls with and
// the one lazyfs fetches lazily with: mirrors, CAs and plain-http settings
// must be the same, or a lazy read goes elsewhere than the pull.
func checkHostsDirs(v Version, l Loaded, p Params) []Finding {
	var sources [][]string
	if v.V2() {
		sources = [][]string{{"plugins", criV2Images, "registry"}, {"plugins", transferService}}
	} else {
		sources = [][]string{{"plugins", criV1, "registry"}}
	}
	var out []Finding
	for _, tbl := range sources {
		dir, _ := l.str(append(tbl, "config_path")...)
		if dir == "" || slices.Contains(strings.Split(dir, ":"), p.HostsDir) {
			continue
		}
		out = append(out, Finding{Fail, "registry hosts dir", setting(tbl, "config_path"),
			fmt.Sprintf("is %q but lazyfs reads hosts.toml from %q: set lazyfs's [registry] config_path to %q (or both to one dir)", dir, p.HostsDir, dir)})
	}
	if len(out) == 0 {
		out = append(out, Finding{Pass, "registry hosts dir", "", fmt.Sprintf("containerd and lazyfs agree (lazyfs: %q)", p.HostsDir)})
	}
	return out
}

// Failed tells whether any finding is a Fail.
func Failed(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Fail })
}
