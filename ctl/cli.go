package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/mgmtapi"
)

// Exit statuses, for scripts.
const (
	exitOK          = 0 // done
	exitError       = 1 // the command failed (the error is on stderr)
	exitUsage       = 2 // the command line is wrong
	exitUnreachable = 3 // the snapshotter's management API does not answer
)

const progName = "snapshotterctl"

// command is a node of the command tree: a group (subs) or a leaf (setup).
type command struct {
	name    string
	args    string // positional arguments as the usage line shows them
	summary string
	// help is printed under the usage line of a leaf (why and how, not the
	// flags: those are listed from the flag set).
	help string
	// setup defines the leaf's flags on fs and returns its action, which
	// reads them once fs is parsed.
	setup func(fs *flag.FlagSet) action
	subs  []*command
}

// action runs a leaf command with its positional arguments.
type action func(ctx context.Context, a *app, args []string) error

// app is what every command gets: the global flags and the output streams.
type app struct {
	g      globals
	stdout io.Writer
	stderr io.Writer
}

// usageError is a mistake in the command line: exit status 2 and a pointer
// to --help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// commands is the tree under snapshotterctl.
func commands() *command {
	return &command{
		name: progName,
		subs: []*command{versionCommand(), statusCommand(), daemonsCommand(), mountsCommand(), shutdownCommand(), imageCommand(), configCommand(), doctorCommand()},
	}
}

// Run executes the command line args (without the program name) and
// returns the exit status. Errors go to stderr as one
// "snapshotterctl: COMMAND: ..." line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{g: defaultGlobals(), stdout: stdout, stderr: stderr}
	root := commands()

	top := newFlagSet(progName)
	a.g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printGroupHelp(stdout, nil, root, top)
			return exitOK
		}
		return a.usageFailure(nil, err)
	}

	// Walk down the groups to a leaf.
	path := []string{}
	cmd, rest := root, top.Args()
	for cmd.setup == nil {
		if len(rest) == 0 {
			printGroupHelp(stderr, path, cmd, top)
			return exitUsage
		}
		name := rest[0]
		if name == "help" || name == "-h" || name == "-help" || name == "--help" {
			printGroupHelp(stdout, path, cmd, top)
			return exitOK
		}
		next := cmd.sub(name)
		if next == nil {
			return a.usageFailure(path, usagef("unknown command %q; commands: %s", name, cmd.subNames()))
		}
		path, cmd, rest = append(path, name), next, rest[1:]
	}

	fs := newFlagSet(progName + " " + strings.Join(path, " "))
	act := cmd.setup(fs)
	a.g.register(fs)
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printLeafHelp(stdout, path, cmd, fs)
			return exitOK
		}
		return a.usageFailure(path, err)
	}
	if err := setLogLevel(a.g.debug); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return exitError
	}
	if err := act(ctx, a, positional); err != nil {
		var uerr *usageError
		if errors.As(err, &uerr) {
			return a.usageFailure(path, err)
		}
		fmt.Fprintf(stderr, "%s: %s: %v\n", progName, strings.Join(path, " "), err)
		if errors.Is(err, mgmtapi.ErrUnreachable) {
			return exitUnreachable
		}
		return exitError
	}
	return exitOK
}

// setLogLevel quiets the libraries' logging: they log progress at info
// level, and the commands print their own, so only warnings and errors reach
// stderr unless --debug asks for more.
func setLogLevel(debug bool) error {
	if debug {
		return log.SetLevel("debug")
	}
	return log.SetLevel("warn")
}

// usageFailure reports a usage error and returns exitUsage.
func (a *app) usageFailure(path []string, err error) int {
	name := strings.Join(append([]string{progName}, path...), " ")
	fmt.Fprintf(a.stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, name)
	return exitUsage
}

func (c *command) sub(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (c *command) subNames() string {
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// newFlagSet returns a flag set that reports errors to its caller instead
// of printing them and exiting.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterspersed parses args with fs, allowing flags after positional
// arguments ("daemons logs ID -f"), which the flag package alone stops at.
// Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
