// Command snapshotterctl is the operator's CLI for lazyfs: it lists and
// inspects the lazyfsd workers, shows their logs, pulls images through
// containerd with the lazyfs snapshotter (so that layers are mounted lazily
// even on containerd 1.6) and converts images to eStargz.
//
// Usage: snapshotterctl [global flags] COMMAND [flags] [args]; run
// `snapshotterctl --help` for the commands. Exit status: 0 on success, 1 on
// an error, 2 on a usage error.
//
// main only wires: signals in, the command tree (cli.go) out.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
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
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
