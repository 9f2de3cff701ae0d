package ctl

import (
	"context"
	"flag"
)

func statusCommand() *command {
	return &command{
		name:    "status",
		summary: "show the snapshotter's health, counts and the kernel facts failover needs",
		help: `Exit status 0 when the snapshotter answers, whether its health is "ok" or
"degraded" (the problems are listed); 3 when it cannot be reached.`,
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
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if *out == "json" {
					return writeJSON(a.stdout, st)
				}
				return writeStatus(a.stdout, st)
			}
		},
	}
}
