package ctl

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/containerd/platforms"

	"github.com/lazyfs/lazyfs/containerdconf"
)

// containerdCommandTimeout bounds one run of the containerd binary
// (--version, config default, config dump): none of them starts a daemon.
const containerdCommandTimeout = 30 * time.Second

// nodeFlags locate the node's containerd: its binary and config file.
type nodeFlags struct {
	bin     string
	config  string
	version string // overrides detection ("2.3.7"), for a node not yet running it
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.bin, "containerd-bin", "containerd", "containerd `binary` whose version and configuration count")
	fs.StringVar(&n.config, "containerd-config", "/etc/containerd/config.toml", "containerd's configuration `file`")
	fs.StringVar(&n.version, "containerd-version", "", "containerd `release` to write for (default: `containerd --version`)")
}

// runContainerd runs the containerd binary with args (no daemon) and
// returns its stdout; its stderr is in the error.
func (n *nodeFlags) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, containerdCommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", n.bin, args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// detectVersion is --containerd-version, else `containerd --version`.
func (n *nodeFlags) detectVersion(ctx context.Context) (containerdconf.Version, error) {
	out := n.version
	if out == "" {
		b, err := n.run(ctx, "--version")
		if err != nil {
			return containerdconf.Version{}, fmt.Errorf("failed to tell containerd's version (--containerd-bin names the binary, --containerd-version the release): %w", err)
		}
		out = string(b)
	} else {
		out = "containerd " + out
	}
	v, err := containerdconf.ParseVersion(out)
	if err != nil {
		return v, err
	}
	if !v.Supported() {
		return v, fmt.Errorf("containerd %s is not supported: lazyfs supports 1.6, 1.7 and 2.x", v)
	}
	return v, nil
}

// dump returns the configuration containerd loads from --containerd-config
// (defaults, imports and migration applied).
func (n *nodeFlags) dump(ctx context.Context) ([]byte, error) {
	return n.run(ctx, "--config", n.config, "config", "dump")
}

var configVersionLine = regexp.MustCompile(`(?m)^version\s*=\s*(\d+)`)

// defaultConfigVersion is the config version the installed containerd
// writes (`containerd config default`), 3 when it cannot be told: 2.x
// migrates an older version at every start and warns about it.
func (n *nodeFlags) defaultConfigVersion(ctx context.Context) int {
	if n.version != "" {
		return 0
	}
	out, err := n.run(ctx, "config", "default")
	if err != nil {
		return 0
	}
	m := configVersionLine.FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// lazyfsParams are what containerd must know of this node's lazyfs, from
// lazyfs's config (--config) and --snapshotter.
func (a *app) lazyfsParams() (containerdconf.Params, error) {
	cfg, err := a.g.config()
	if err != nil {
		return containerdconf.Params{}, err
	}
	return containerdconf.Params{
		Name:     a.g.snapshotter,
		Address:  cfg.Address,
		Root:     cfg.Root,
		Platform: platforms.DefaultString(),
		HostsDir: cfg.Registry.ConfigPath,
	}, nil
}
