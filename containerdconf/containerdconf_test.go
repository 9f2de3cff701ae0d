package containerdconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	toml "github.com/pelletier/go-toml/v2"
)

var params = Params{
	Name: "lazyfs", Address: "/run/lazyfs/snapshotter.sock", Root: "/var/lib/lazyfs",
	Platform: "linux/amd64", HostsDir: "/etc/containerd/certs.d",
}

var (
	v2  = Version{2, 3, 7}
	v16 = Version{1, 6, 20}
	v17 = Version{1, 7, 27}
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want Version
	}{
		{"containerd github.com/containerd/containerd/v2 2.3.7+unknown \n", v2},
		{"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", v16},
		{"containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", v17},
	} {
		got, err := ParseVersion(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", tc.out, got, err, tc.want)
		}
	}
	if _, err := ParseVersion("containerd: command not found"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no release: err = %v, want invalid argument", err)
	}
}

func TestSupported(t *testing.T) {
	for v, want := range map[Version]bool{v2: true, v16: true, v17: true, {1, 5, 0}: false, {3, 0, 0}: false} {
		if v.Supported() != want {
			t.Errorf("%v.Supported() = %v, want %v", v, !want, want)
		}
	}
}

// TestParamsGuards pins each check of Params.validate: a name that is not a
// bare key would break the table header the drop-in writes.
func TestParamsGuards(t *testing.T) {
	for name, mutate := range map[string]func(*Params){
		"empty name":       func(p *Params) { p.Name = "" },
		"name with a dot":  func(p *Params) { p.Name = "lazy.fs" },
		"empty platform":   func(p *Params) { p.Platform = "" },
		"relative address": func(p *Params) { p.Address = "lazyfs.sock" },
		"relative root":    func(p *Params) { p.Root = "var/lib/lazyfs" },
		"empty address":    func(p *Params) { p.Address = "" },
		"empty root":       func(p *Params) { p.Root = "" },
	} {
		p := params
		mutate(&p)
		if _, err := DropIn(v2, p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: DropIn err = %v, want invalid argument", name, err)
		}
		if _, err := MergeV1(v16, nil, p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: MergeV1 err = %v, want invalid argument", name, err)
		}
	}
}

// loaded turns a config file into what Check reads (a dump has more keys,
// which Check ignores).
func loaded(t *testing.T, cfg string) Loaded {
	t.Helper()
	l, err := ParseLoaded([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func failedKeys(fs []Finding) []string {
	var keys []string
	for _, f := range fs {
		if f.Severity == Fail {
			keys = append(keys, f.Key)
		}
	}
	return keys
}

// TestDropInChecksGreen: the drop-in the command writes passes the checks.
func TestDropInChecksGreen(t *testing.T) {
	p := params
	p.ConfigVersion = 4
	out, err := DropIn(v2, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "version = 4\n") {
		t.Errorf("drop-in does not carry the config version:\n%s", out)
	}
	fs := Check(v2, loaded(t, string(out)), params)
	if Failed(fs) {
		t.Errorf("drop-in fails the checks: %+v", fs)
	}
	for _, f := range fs {
		if f.Severity == Warn {
			t.Errorf("drop-in warns: %+v", f)
		}
	}
	if _, err := DropIn(v16, params); err == nil {
		t.Error("DropIn for 1.6 succeeded")
	}
}

// TestMergeV1 merges into Debian's stock 1.6 config: one CRI table, the
// keys already there kept, and the checks pass.
func TestMergeV1(t *testing.T) {
	existing := `version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      disable_snapshot_annotations = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
`
	out, err := MergeV1(v16, []byte(existing), params)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := toml.Unmarshal(out, &m); err != nil {
		t.Fatalf("merged config is not TOML (duplicated table?): %v\n%s", err, out)
	}
	l := Loaded{tree: m}
	if s, _ := l.str("plugins", criV1, "sandbox_image"); s != "registry.k8s.io/pause:3.6" {
		t.Errorf("sandbox_image = %q: the CRI table was replaced\n%s", s, out)
	}
	if s, _ := l.str("plugins", criV1, "cni", "bin_dir"); s != "/usr/lib/cni" {
		t.Errorf("cni.bin_dir = %q: lost\n%s", s, out)
	}
	if fs := Check(v16, l, params); Failed(fs) {
		t.Errorf("merged config fails the checks: %+v", failedKeys(fs))
	}
	// Merging twice changes nothing more.
	again, err := MergeV1(v16, out, params)
	if err != nil || string(again) != string(out) {
		t.Errorf("second merge differs (%v):\n%s\nvs\n%s", err, again, out)
	}
	// A missing file gives lazyfs's keys alone.
	fresh, err := MergeV1(v17, nil, params)
	if err != nil {
		t.Fatal(err)
	}
	if fs := Check(v17, loaded(t, string(fresh)), params); Failed(fs) {
		t.Errorf("fresh config fails the checks: %+v", failedKeys(fs))
	}
}

// TestMergeV1Guards: what MergeV1 refuses rather than guess at.
func TestMergeV1Guards(t *testing.T) {
	for name, cfg := range map[string]string{
		"not TOML":               "version = 2\n[plugins\n",
		"version 1":              "[plugins.cri]\n  sandbox_image = \"x\"\n",
		"version 3":              "version = 3\n",
		"proxy_plugins a string": "version = 2\nproxy_plugins = \"x\"\n",
		"cri containerd a value": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = 1\n",
	} {
		if _, err := MergeV1(v16, []byte(cfg), params); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
	if _, err := MergeV1(v2, nil, params); err == nil || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("MergeV1 for 2.x: err = %v, want a plain refusal", err)
	}
}

// TestCheckNamesTheKey: each misconfiguration of the issue is a Fail that
// names the key to change.
func TestCheckNamesTheKey(t *testing.T) {
	good, err := DropIn(v2, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    Version
		cfg  string
		key  string
	}{
		{"2.x snapshotter alone", v2, `[proxy_plugins.lazyfs]
type = "snapshot"
address = "/run/lazyfs/snapshotter.sock"
[plugins."io.containerd.cri.v1.images"]
snapshotter = "lazyfs"`, `[[plugins."io.containerd.transfer.v1.local".unpack_config]]`},
		{"2.x no annotations", v2, strings.Replace(string(good), `enable_remote_snapshot_annotations = "true"`, "", 1),
			`[proxy_plugins.lazyfs.exports] enable_remote_snapshot_annotations`},
		{"2.x no CRI snapshotter", v2, strings.Replace(string(good), "snapshotter = \"lazyfs\"\n\n", "\n", 1),
			`[plugins."io.containerd.cri.v1.images"] snapshotter`},
		{"no proxy plugin", v2, `version = 3`, `[proxy_plugins.lazyfs]`},
		{"wrong address", v2, strings.Replace(string(good), "/run/lazyfs/snapshotter.sock", "/run/other.sock", 1),
			`[proxy_plugins.lazyfs] address`},
		{"wrong type", v2, strings.Replace(string(good), `type = "snapshot"`, `type = "diff"`, 1),
			`[proxy_plugins.lazyfs] type`},
		{"1.6 annotations disabled", v16, `[proxy_plugins.lazyfs]
type = "snapshot"
address = "/run/lazyfs/snapshotter.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "lazyfs"
disable_snapshot_annotations = true`, `[plugins."io.containerd.grpc.v1.cri".containerd] disable_snapshot_annotations`},
		{"1.6 hosts dir", v16, `[proxy_plugins.lazyfs]
type = "snapshot"
address = "/run/lazyfs/snapshotter.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "lazyfs"
[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/etc/other/certs.d"`, `[plugins."io.containerd.grpc.v1.cri".registry] config_path`},
		{"2.x transfer hosts dir", v2, string(good) + `
[plugins."io.containerd.transfer.v1.local"]
config_path = "/etc/other/certs.d"`, `[plugins."io.containerd.transfer.v1.local"] config_path`},
	} {
		fs := Check(tc.v, loaded(t, tc.cfg), params)
		if keys := failedKeys(fs); !contains(keys, tc.key) {
			t.Errorf("%s: failed keys %q, want %q", tc.name, keys, tc.key)
		}
	}
}

func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// TestCheckWarnings: settings that work but are worth knowing are Warn,
// not Fail (a script's exit status must not flip on them).
func TestCheckWarnings(t *testing.T) {
	good, _ := DropIn(v2, params)
	both := strings.Replace(string(good), "snapshotter = \"lazyfs\"\n\n", "snapshotter = \"lazyfs\"\ndisable_snapshot_annotations = false\n\n", 1)
	fs := Check(v2, loaded(t, both), params)
	if Failed(fs) || !hasWarn(fs, `[plugins."io.containerd.cri.v1.images"] disable_snapshot_annotations`) {
		t.Errorf("both mechanisms: %+v", fs)
	}
	noOverlay := strings.Replace(string(good), "snapshotter = \"overlayfs\"", "snapshotter = \"native\"", 1)
	if fs := Check(v2, loaded(t, noOverlay), params); !hasWarn(fs, `[[plugins."io.containerd.transfer.v1.local".unpack_config]]`) {
		t.Errorf("no overlayfs entry: %+v", fs)
	}
	criOff := "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n" + strings.Replace(string(good), "snapshotter = \"lazyfs\"\n\n", "\n", 1)
	if fs := Check(v2, loaded(t, criOff), params); Failed(fs) || !hasWarn(fs, "disabled_plugins") {
		t.Errorf("CRI disabled: %+v", fs)
	}
}

func hasWarn(fs []Finding, key string) bool {
	for _, f := range fs {
		if f.Severity == Warn && f.Key == key {
			return true
		}
	}
	return false
}

func TestImageFSPath(t *testing.T) {
	if got := ImageFSPath(v16, "/var/lib/containerd", params); got != "/var/lib/containerd/io.containerd.snapshotter.v1.lazyfs" {
		t.Errorf("1.6: %s", got)
	}
	for _, v := range []Version{v17, v2} {
		if got := ImageFSPath(v, "/var/lib/containerd", params); got != params.Root {
			t.Errorf("%v: %s", v, got)
		}
	}
}
