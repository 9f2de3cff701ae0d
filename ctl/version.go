package ctl

import (
	"context"
	"flag"
	"fmt"
	"runtime"
)

// Version is snapshotterctl's version; cmd/snapshotterctl sets it from its
// build.
var Version = "dev"

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version of snapshotterctl",
		setup: func(*flag.FlagSet) action {
			return func(_ context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				fmt.Fprintf(a.stdout, "%s %s (%s, %s/%s)\n", progName, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			}
		},
	}
}
