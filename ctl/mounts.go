package ctl

import (
	"context"
	"flag"
)

func mountsCommand() *command {
	return &command{
		name:    "mounts",
		summary: "list the FUSE mounts of lazily loaded layers",
		subs:    []*command{mountsListCommand()},
	}
}

func mountsListCommand() *command {
	return &command{
		name:    "list",
		summary: "list every lazily loaded layer's mount and its worker",
		setup: func(fs *flag.FlagSet) action {
			out := outputFlag(fs, "", "json")
			timeout := fs.Duration("timeout", defaultQueryTimeout, "how long to wait for the snapshotter's answer")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				c, ctx, cancel, err := a.mgmtWithin(ctx, *timeout)
				if err != nil {
					return err
				}
				defer cancel()
				ms, err := c.Mounts(ctx)
				if err != nil {
					return err
				}
				sortMounts(ms)
				if *out == "json" {
					return writeJSON(a.stdout, ms)
				}
				return writeMountTable(a.stdout, ms, true)
			}
		},
	}
}
