package ctl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/lazyfs/lazyfs/containerdconf"
)

func configCommand() *command {
	return &command{
		name:    "config",
		summary: "write the configuration other programs need to use lazyfs",
		subs:    []*command{configContainerdCommand()},
	}
}

func configContainerdCommand() *command {
	return &command{
		name:    "containerd",
		summary: "print or write containerd's configuration for lazyfs, for the installed containerd",
		help: `Prints the containerd configuration that makes containerd (and Kubernetes
through CRI) pull with lazyfs, for the containerd that --containerd-bin runs
(` + "`containerd --version`" + `); --write writes it, keeping a backup of any file it
changes, and says what to restart.

containerd 2.x: a drop-in, --conf-dir/lazyfs.toml, that containerd reads
through ` + "`imports`" + ` (added to --containerd-config when missing). Pulls reach lazyfs
with their labels through the transfer service (unpack_config,
enable_remote_snapshot_annotations); CRI keeps disable_snapshot_annotations
at its default.

containerd 1.6/1.7: the keys merged into --containerd-config (its existing
CRI table; comments stay in the backup only), and on 1.6 the image file system
path CRI reports (<containerd root>/io.containerd.snapshotter.v1.lazyfs)
linked to lazyfs's root.

Addresses and paths come from lazyfs's configuration (--config). Then
restart containerd and run ` + "`snapshotterctl doctor`" + `.`,
		setup: func(fs *flag.FlagSet) action {
			var node nodeFlags
			node.register(fs)
			write := fs.Bool("write", false, "write the files instead of printing them (with a backup of each file changed)")
			confDir := fs.String("conf-dir", containerdconf.DefaultConfDir, "containerd 2.x's drop-in `dir`")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				v, err := node.detectVersion(ctx)
				if err != nil {
					return err
				}
				p, err := a.lazyfsParams()
				if err != nil {
					return err
				}
				var plan []fileChange
				if v.V2() {
					p.ConfigVersion = node.defaultConfigVersion(ctx)
					plan, err = planV2(v, p, node.config, *confDir)
				} else {
					plan, err = planV1(ctx, v, p, &node)
				}
				if err != nil {
					return err
				}
				if !*write {
					for _, c := range plan {
						if c.link != "" {
							fmt.Fprintf(a.stdout, "# and a symlink %s -> %s (the image file system path CRI reports)\n", c.path, c.link)
							continue
						}
						fmt.Fprintf(a.stdout, "# %s (containerd %s)\n%s", c.path, v, c.data)
					}
					return nil
				}
				for _, c := range plan {
					msg, err := c.apply(time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, msg)
				}
				fmt.Fprintln(a.stdout, "now restart containerd (systemctl restart containerd) and check with: snapshotterctl doctor")
				return nil
			}
		},
	}
}

// fileChange is one file --write writes, or one symlink it makes.
type fileChange struct {
	path string
	data []byte
	link string // when set, path becomes a symlink to link (if missing)
}

// planV2 is the drop-in, plus an `imports` line in the main config when it
// exists and does not import the drop-in's dir (a file without `imports`
// imports nothing; only a missing file gets 2.x's default imports).
func planV2(v containerdconf.Version, p containerdconf.Params, mainConfig, confDir string) ([]fileChange, error) {
	dropIn, err := containerdconf.DropIn(v, p)
	if err != nil {
		return nil, err
	}
	dropInPath := filepath.Join(confDir, containerdconf.DropInName)
	plan := []fileChange{{path: dropInPath, data: dropIn}}
	existing, err := os.ReadFile(mainConfig)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if confDir == containerdconf.DefaultConfDir {
			return plan, nil
		}
		main := fmt.Sprintf("version = %d\nimports = [%q]\n", max(p.ConfigVersion, 3), filepath.Join(confDir, "*.toml"))
		return append(plan, fileChange{path: mainConfig, data: []byte(main)}), nil
	case err != nil:
		return nil, fmt.Errorf("failed to read containerd's config: %w", err)
	}
	withImport, err := addImport(existing, filepath.Join(confDir, "*.toml"), dropInPath)
	if err != nil {
		return nil, fmt.Errorf("containerd config %s: %w", mainConfig, err)
	}
	if !bytes.Equal(withImport, existing) {
		plan = append(plan, fileChange{path: mainConfig, data: withImport})
	}
	return plan, nil
}

var versionKeyLine = regexp.MustCompile(`(?m)^version\s*=.*\n`)

// addImport returns config with pattern in its top-level `imports`, or
// config as it is when an import already covers dropIn. Only a config
// without an imports key is edited (a line after `version`, comments
// kept); one whose imports miss the drop-in is left to the operator.
func addImport(config []byte, pattern, dropIn string) ([]byte, error) {
	var top struct {
		Imports []string `toml:"imports"`
	}
	if err := toml.Unmarshal(config, &top); err != nil {
		return nil, fmt.Errorf("not valid TOML: %w", err)
	}
	if top.Imports != nil {
		for _, imp := range top.Imports {
			if ok, _ := filepath.Match(imp, dropIn); ok {
				return config, nil
			}
		}
		return nil, fmt.Errorf("its imports %q do not include %s: add %q to them", top.Imports, dropIn, pattern)
	}
	line := fmt.Sprintf("imports = [%q]\n", pattern)
	if loc := versionKeyLine.FindIndex(config); loc != nil {
		return append(append(append([]byte{}, config[:loc[1]]...), line...), config[loc[1]:]...), nil
	}
	return append([]byte(line), config...), nil
}

// planV1 is the main config with lazyfs's keys merged in and, on 1.6, the
// symlink that makes CRI's image file system path exist.
func planV1(ctx context.Context, v containerdconf.Version, p containerdconf.Params, node *nodeFlags) ([]fileChange, error) {
	existing, err := os.ReadFile(node.config)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("failed to read containerd's config: %w", err)
	}
	merged, err := containerdconf.MergeV1(v, existing, p)
	if err != nil {
		return nil, fmt.Errorf("containerd config %s: %w", node.config, err)
	}
	plan := []fileChange{{path: node.config, data: merged}}
	root := "/var/lib/containerd"
	if out, err := node.dump(ctx); err == nil {
		if l, err := containerdconf.ParseLoaded(out); err == nil && l.Root() != "" {
			root = l.Root()
		}
	}
	if fsPath := containerdconf.ImageFSPath(v, root, p); fsPath != p.Root {
		plan = append(plan, fileChange{path: fsPath, link: p.Root})
	}
	return plan, nil
}

// apply writes the change: a changed file is first copied to
// <path>.lazyfs-backup-<time>, then replaced atomically (temp file +
// rename) with the old file's mode. An identical file is left alone.
func (c fileChange) apply(now time.Time) (string, error) {
	if c.link != "" {
		if _, err := os.Lstat(c.path); err == nil {
			return fmt.Sprintf("%s exists, left as it is", c.path), nil
		}
		if err := os.MkdirAll(filepath.Dir(c.path), 0o711); err != nil {
			return "", fmt.Errorf("failed to create %s: %w", filepath.Dir(c.path), err)
		}
		if err := os.Symlink(c.link, c.path); err != nil {
			return "", fmt.Errorf("failed to link the image file system path: %w", err)
		}
		return fmt.Sprintf("linked %s -> %s", c.path, c.link), nil
	}
	mode := fs.FileMode(0o644)
	old, err := os.ReadFile(c.path)
	backup := ""
	switch {
	case err == nil && bytes.Equal(old, c.data):
		return fmt.Sprintf("%s is up to date", c.path), nil
	case err == nil:
		if st, err := os.Stat(c.path); err == nil {
			mode = st.Mode().Perm()
		}
		backup = fmt.Sprintf("%s.lazyfs-backup-%s", c.path, now.UTC().Format("20060102T150405Z"))
		if err := os.WriteFile(backup, old, mode); err != nil {
			return "", fmt.Errorf("failed to back %s up: %w", c.path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("failed to read %s: %w", c.path, err)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", filepath.Dir(c.path), err)
	}
	tmp := c.path + ".lazyfs-tmp"
	if err := os.WriteFile(tmp, c.data, mode); err != nil {
		return "", fmt.Errorf("failed to write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("failed to write %s: %w", c.path, err)
	}
	if backup != "" {
		return fmt.Sprintf("wrote %s (previous file kept as %s)", c.path, backup), nil
	}
	return fmt.Sprintf("wrote %s", c.path), nil
}
