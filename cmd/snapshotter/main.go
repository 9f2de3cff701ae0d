// Command lazyfs-snapshotter serves containerd's snapshots API over a unix
// socket (a containerd proxy plugin) and mounts lazily loaded layers through
// lazyfsd workers. main only wires: flags and config in, snapshotter and
// servers out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/config"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lazyfs-snapshotter: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		configPath  = flag.String("config", config.DefaultPath, "path of the TOML configuration file (optional at its default path)")
		root        = flag.String("root", "", "directory for metadata, snapshots and caches (overrides the config's root)")
		address     = flag.String("address", "", "unix socket for containerd's snapshots API (overrides the config's address)")
		logLevel    = flag.String("log-level", "", "trace, debug, info, warn or error (overrides the config's log_level)")
		showVersion = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *showVersion {
		fmt.Println("lazyfs-snapshotter", version)
		return nil
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	cfg, err := loadConfig(*configPath, flagWasSet("config"))
	if err != nil {
		return err
	}
	if *root != "" {
		cfg.Root = *root
	}
	if *address != "" {
		cfg.Address = *address
	}
	if *logLevel != "" {
		cfg.LogLevel = *logLevel
	}
	// Flags override the file, so their values are validated the same way.
	if err := cfg.Validate(); err != nil {
		return err
	}

	if err := log.SetFormat(log.TextFormat); err != nil {
		return err
	}
	if err := log.SetLevel(cfg.LogLevel); err != nil {
		return err
	}
	ctx := log.WithLogger(context.Background(), log.L.WithField("component", "snapshotter"))
	log.G(ctx).WithField("version", version).WithField("root", cfg.Root).WithField("address", cfg.Address).Info("starting lazyfs-snapshotter")
	return serve(ctx, cfg)
}

// loadConfig reads the config file; at its default path the file is optional.
func loadConfig(path string, explicit bool) (config.Config, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return config.Default(), nil
	}
	return cfg, err
}

func flagWasSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
