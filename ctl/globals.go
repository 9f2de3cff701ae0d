package ctl

import (
	"errors"
	"flag"
	"io/fs"
	"slices"

	"github.com/lazyfs/lazyfs/config"
	"github.com/lazyfs/lazyfs/layout"
)

// Defaults of the global flags that do not come from the lazyfs config.
const (
	defaultAddress     = "/run/containerd/containerd.sock"
	defaultNamespace   = "default"
	defaultSnapshotter = "lazyfs"
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	configPath  string
	runDir      string // overrides the config's run_dir when set
	socket      string // the management API's socket; overrides <run_dir>/api.sock
	address     string
	namespace   string
	snapshotter string
	debug       bool

	cfg    *config.Config // loaded on first use
	cfgErr error
}

var globalFlagNames = []string{"config", "run-dir", "socket", "address", "namespace", "snapshotter", "debug"}

func isGlobalFlag(name string) bool { return slices.Contains(globalFlagNames, name) }

// defaultConfigPath is where the configuration is read from when --config
// is not given; a variable so that tests never read the machine's own file.
var defaultConfigPath = config.DefaultPath

func defaultGlobals() globals {
	return globals{
		configPath:  defaultConfigPath,
		address:     defaultAddress,
		namespace:   defaultNamespace,
		snapshotter: defaultSnapshotter,
	}
}

// register defines the global flags on fs. It is called for the top-level
// flag set and again for the leaf command's, with the values parsed so far as
// defaults, so that "--run-dir X daemons list" and "daemons list --run-dir X"
// both work.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.configPath, "config", g.configPath, "lazyfs configuration `file`; missing at its default path, the defaults apply")
	fs.StringVar(&g.runDir, "run-dir", g.runDir, "lazyfs run `dir` holding the snapshotter's api.sock (default: the config's run_dir)")
	fs.StringVar(&g.socket, "socket", g.socket, "the snapshotter's management API `socket` (default: <run-dir>/api.sock)")
	fs.StringVar(&g.address, "address", g.address, "containerd's `socket`")
	fs.StringVar(&g.namespace, "namespace", g.namespace, "containerd namespace `name`")
	fs.StringVar(&g.snapshotter, "snapshotter", g.snapshotter, "`name` of the lazyfs snapshotter in containerd's config")
	fs.BoolVar(&g.debug, "debug", g.debug, "print the debug log of the containerd client and the converter on stderr")
}

// config loads the lazyfs configuration once. A file missing at the default
// path means the defaults, as for the snapshotter itself; anywhere else it is
// an error, since the operator asked for that file.
func (g *globals) config() (config.Config, error) {
	if g.cfg == nil && g.cfgErr == nil {
		cfg, err := config.Load(g.configPath)
		if errors.Is(err, fs.ErrNotExist) && g.configPath == defaultConfigPath {
			cfg, err = config.Default(), nil
		}
		// Load's errors name the file (and the line of each problem).
		if err != nil {
			g.cfgErr = err
		} else {
			g.cfg = &cfg
		}
	}
	if g.cfgErr != nil {
		return config.Config{}, g.cfgErr
	}
	return *g.cfg, nil
}

// resolvedRunDir is --run-dir, else the config's run_dir. The config is
// not read when the flag is given, so a broken config file does not stand
// between an operator and the workers.
func (g *globals) resolvedRunDir() (string, error) {
	if g.runDir != "" {
		return g.runDir, nil
	}
	cfg, err := g.config()
	if err != nil {
		return "", err
	}
	return cfg.RunDir, nil
}

// mgmtSocket is --socket, else <run dir>/api.sock.
func (g *globals) mgmtSocket() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	runDir, err := g.resolvedRunDir()
	if err != nil {
		return "", err
	}
	return layout.RunDir(runDir).MgmtSocket(), nil
}
