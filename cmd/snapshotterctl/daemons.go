package main

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// defaultWorkerTimeout bounds the wait for one worker's answer: a worker
// that accepts connections but never answers must show as unreachable, not
// hang the operator's terminal.
const defaultWorkerTimeout = 5 * time.Second

func daemonsCommand() *command {
	return &command{
		name:    "daemons",
		summary: "list and inspect the lazyfsd workers and read their logs",
		subs:    []*command{daemonsListCommand(), daemonsInspectCommand(), daemonsLogsCommand()},
	}
}

func daemonsListCommand() *command {
	return &command{
		name:    "list",
		summary: "list the lazyfsd workers and their state",
		help: `Finds the workers by their API sockets (<run_dir>/workers/<id>/api.sock) and asks
each for its state. A worker whose socket does not answer is listed as
"unreachable" and the error is printed on stderr; the exit status stays 0.`,
		setup: func(fs *flag.FlagSet) action {
			asJSON := fs.Bool("json", false, "print the workers as a JSON list of their daemon info")
			timeout := fs.Duration("timeout", defaultWorkerTimeout, "how long to wait for each worker's answer")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				return listDaemons(ctx, a, *asJSON, *timeout)
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
			asJSON := fs.Bool("json", false, "print the worker's daemon info as JSON")
			timeout := fs.Duration("timeout", defaultWorkerTimeout, "how long to wait for the worker's answer")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := workerIDArg(args)
				if err != nil {
					return err
				}
				return inspectDaemon(ctx, a, id, *asJSON, *timeout)
			}
		},
	}
}

func daemonsLogsCommand() *command {
	return &command{
		name:    "logs",
		args:    "ID",
		summary: "print the tail of a worker's log",
		help: `Reads <log_dir>/daemons/<id>.log. With -f it keeps printing what the worker
writes, across rotations of the file, until interrupted.`,
		setup: func(fs *flag.FlagSet) action {
			lines := fs.Int("n", 100, "number of last `lines` to print (0: none, e.g. with -f)")
			follow := fs.Bool("f", false, "follow the log as it grows")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := workerIDArg(args)
				if err != nil {
					return err
				}
				if *lines < 0 {
					return usagef("-n %d: the number of lines cannot be negative", *lines)
				}
				logDir, err := a.g.resolvedLogDir()
				if err != nil {
					return err
				}
				t := logTail{
					path:     workerLogPath(logDir, id),
					lines:    *lines,
					follow:   *follow,
					interval: logFollowInterval,
					out:      a.stdout,
					notes:    a.stderr,
				}
				return t.run(ctx)
			}
		},
	}
}

// listDaemons prints every worker found under the run dir.
func listDaemons(ctx context.Context, a *app, asJSON bool, timeout time.Duration) error {
	runDir, err := a.g.resolvedRunDir()
	if err != nil {
		return err
	}
	logDir, err := a.g.resolvedLogDir()
	if err != nil {
		return err
	}
	refs, err := findWorkers(runDir)
	if err != nil {
		return err
	}
	statuses := queryWorkers(ctx, refs, logDir, timeout)
	if err := ctx.Err(); err != nil {
		return err
	}
	if asJSON {
		err = writeJSON(a.stdout, statuses)
	} else {
		err = writeWorkerTable(a.stdout, statuses, time.Now())
	}
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		fmt.Fprintf(a.stderr, "%s: no workers found under %s: no layer is mounted lazily right now, "+
			"or lazyfs-snapshotter uses another run dir (--run-dir, --config)\n", progName, workersDir(runDir))
	}
	for _, st := range statuses {
		if st.Error != "" {
			fmt.Fprintf(a.stderr, "%s: daemons list: %s\n", progName, st.Error)
		}
	}
	return nil
}

// inspectDaemon prints one worker and its mounts.
func inspectDaemon(ctx context.Context, a *app, id string, asJSON bool, timeout time.Duration) error {
	runDir, err := a.g.resolvedRunDir()
	if err != nil {
		return err
	}
	logDir, err := a.g.resolvedLogDir()
	if err != nil {
		return err
	}
	ref, err := findWorker(runDir, id)
	if err != nil {
		return err
	}
	st, err := queryWorker(ctx, ref, logDir, timeout)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("%w; its log: %s", err, st.Log)
	}
	if asJSON {
		return writeJSON(a.stdout, st)
	}
	return writeWorkerDetail(a.stdout, st, time.Now())
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
	if err := validateWorkerID(args[0]); err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return args[0], nil
}
