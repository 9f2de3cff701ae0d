package ctl

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/lazyfs/lazyfs/mgmtapi"
)

// defaultQueryTimeout bounds a query: a snapshotter that accepts
// connections but never answers must show as an error, not hang the
// operator's terminal.
const defaultQueryTimeout = 10 * time.Second

// defaultRestartTimeout bounds a restart: the successor loads every layer
// from the kept TOCs and takes every connection over.
const defaultRestartTimeout = 2 * time.Minute

func daemonsCommand() *command {
	return &command{
		name:    "daemons",
		summary: "list, inspect and restart the lazyfsd workers and read their logs",
		subs:    []*command{daemonsListCommand(), daemonsInspectCommand(), daemonsRestartCommand(), daemonsLogsCommand()},
	}
}

func daemonsListCommand() *command {
	return &command{
		name:    "list",
		summary: "list the lazyfsd workers and their state",
		help: `Asks the snapshotter (its management API, <run_dir>/api.sock) for its workers.
-o wide adds the mode, memory, FUSE_NOTIFY_RESEND support and the last exit;
-o json prints everything the API returns.`,
		setup: func(fs *flag.FlagSet) action {
			out := outputFlag(fs, "", "json", "wide")
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
				ws, err := c.Workers(ctx)
				if err != nil {
					return err
				}
				for i := range ws {
					sortMounts(ws[i].Mounts)
				}
				switch *out {
				case "json":
					return writeJSON(a.stdout, ws)
				case "wide":
					return writeWorkerTable(a.stdout, ws, true, time.Now())
				}
				return writeWorkerTable(a.stdout, ws, false, time.Now())
			}
		},
	}
}

func daemonsInspectCommand() *command {
	return &command{
		name:    "inspect",
		args:    "ID",
		summary: "show a worker and its mounts",
		setup: func(fs *flag.FlagSet) action {
			out := outputFlag(fs, "", "json")
			timeout := fs.Duration("timeout", defaultQueryTimeout, "how long to wait for the snapshotter's answer")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := workerIDArg(args)
				if err != nil {
					return err
				}
				c, ctx, cancel, err := a.mgmtWithin(ctx, *timeout)
				if err != nil {
					return err
				}
				defer cancel()
				w, err := c.Worker(ctx, id)
				if err != nil {
					return err
				}
				sortMounts(w.Mounts)
				if *out == "json" {
					return writeJSON(a.stdout, w)
				}
				return writeWorkerDetail(a.stdout, w, time.Now())
			}
		},
	}
}

func daemonsRestartCommand() *command {
	return &command{
		name:    "restart",
		args:    "ID",
		summary: "replace a worker by a new process without a container error",
		help: `Starts a successor that takes over every FUSE connection of the worker while
it still serves, then stops the old one (docs/failover.md, planned
replacement). Running containers see no error. Waits until the successor
serves, then prints the old and the new pid.`,
		setup: func(fs *flag.FlagSet) action {
			timeout := fs.Duration("timeout", defaultRestartTimeout, "how long to wait for the successor")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := workerIDArg(args)
				if err != nil {
					return err
				}
				c, ctx, cancel, err := a.mgmtWithin(ctx, *timeout)
				if err != nil {
					return err
				}
				defer cancel()
				res, err := c.Restart(ctx, id)
				if res.NewPID != 0 {
					fmt.Fprintf(a.stdout, "worker %s restarted: pid %d -> %d (%s)\n", id, res.OldPID, res.NewPID, res.Duration.Round(time.Millisecond))
				}
				return err
			}
		},
	}
}

func daemonsLogsCommand() *command {
	return &command{
		name:    "logs",
		args:    "ID",
		summary: "print the tail of a worker's log",
		help: `Prints the end of the worker's log (<log_dir>/daemons/<id>.log), read by the
snapshotter, also for a worker that is gone. With -f it keeps printing what
the worker writes, across rotations of the file, until interrupted.`,
		setup: func(fs *flag.FlagSet) action {
			var lines int
			fs.IntVar(&lines, "tail", 100, "number of last `lines` to print (0: none, e.g. with -f)")
			fs.IntVar(&lines, "n", 100, "same as --tail")
			follow := fs.Bool("f", false, "follow the log as it grows")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := workerIDArg(args)
				if err != nil {
					return err
				}
				if lines < 0 {
					return usagef("--tail %d: the number of lines cannot be negative", lines)
				}
				c, err := a.mgmt()
				if err != nil {
					return err
				}
				return c.Logs(ctx, id, mgmtapi.LogOptions{Tail: lines, Follow: *follow}, a.stdout)
			}
		},
	}
}

// workerIDArg returns the single worker id of args.
func workerIDArg(args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usagef("missing worker ID ('daemons list' shows them)")
	case 1:
	default:
		return "", usagef("expected one worker ID, got %q", args)
	}
	if err := mgmtapi.ValidateWorkerID(args[0]); err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return args[0], nil
}

// outputFlag defines -o (and --output): one of formats ("" is the table).
func outputFlag(fs *flag.FlagSet, formats ...string) *string {
	v := &outputFormat{allowed: formats}
	usage := fmt.Sprintf("output `format`: %q", formats[1:])
	fs.Var(v, "o", usage)
	fs.Var(v, "output", usage)
	return &v.value
}

type outputFormat struct {
	value   string
	allowed []string
}

func (o *outputFormat) String() string { return o.value }

func (o *outputFormat) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("want one of %q", o.allowed[1:])
	}
	o.value = s
	return nil
}

// mgmt returns a client of the snapshotter's management API.
// mgmtWithin is a.mgmt with a context bounded by timeout for the call.
func (a *app) mgmtWithin(ctx context.Context, timeout time.Duration) (*mgmtapi.Client, context.Context, context.CancelFunc, error) {
	c, err := a.mgmt()
	if err != nil {
		return nil, ctx, func() {}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return c, ctx, cancel, nil
}

func (a *app) mgmt() (*mgmtapi.Client, error) {
	socket, err := a.g.mgmtSocket()
	if err != nil {
		return nil, err
	}
	return mgmtapi.NewClient(socket), nil
}
