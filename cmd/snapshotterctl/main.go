// Command snapshotterctl is the operator's CLI for lazyfs: it lists,
// inspects and restarts the lazyfsd workers and reads their logs through the
// snapshotter's management API, and pulls and converts images through
// containerd. The commands live in package ctl.
//
// Exit status: 0 on success, 1 on an error, 2 on a usage error, 3 when the
// snapshotter's management API cannot be reached.
//
// main only wires: signals in, the command tree out.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lazyfs/lazyfs/ctl"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// After the first signal the default handling returns, so that a second
	// Ctrl-C stops a command that does not wind down fast enough.
	go func() {
		<-ctx.Done()
		stop()
	}()
	ctl.Version = version
	code := ctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
