package ctl

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printGroupHelp prints the usage of a command group: its commands and the
// global flags (defined on fs).
func printGroupHelp(w io.Writer, path []string, cmd *command, fs *flag.FlagSet) {
	name := strings.Join(append([]string{progName}, path...), " ")
	if len(path) == 0 {
		fmt.Fprintf(w, "Usage: %s [global flags] COMMAND [flags] [args]\n\n", progName)
		fmt.Fprintf(w, "%s is the operator's CLI for the lazyfs snapshotter.\n", progName)
	} else {
		fmt.Fprintf(w, "Usage: %s [global flags] %s COMMAND [flags] [args]\n\n", progName, strings.Join(path, " "))
		fmt.Fprintf(w, "%s.\n", upperFirst(cmd.summary))
	}
	fmt.Fprintf(w, "\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, s := range cmd.subs {
		args := s.args
		if s.setup == nil {
			args = "COMMAND"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(s.name+" "+args), s.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags (also accepted after the command):\n")
	printFlags(w, fs, func(string) bool { return true })
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", name)
}

// printLeafHelp prints the usage of a leaf command: its own flags, then the
// global ones.
func printLeafHelp(w io.Writer, path []string, cmd *command, fs *flag.FlagSet) {
	usage := strings.Join(append([]string{progName}, path...), " ") + " [flags]"
	if cmd.args != "" {
		usage += " " + cmd.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", usage, upperFirst(cmd.summary))
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	own := func(name string) bool { return !isGlobalFlag(name) }
	if hasFlags(fs, own) {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs, own)
	}
	fmt.Fprintf(w, "\nGlobal flags:\n")
	printFlags(w, fs, isGlobalFlag)
}

func hasFlags(fs *flag.FlagSet, keep func(string) bool) bool {
	found := false
	fs.VisitAll(func(f *flag.Flag) { found = found || keep(f.Name) })
	return found
}

// printFlags lists the flags of fs that keep selects, in the flag package's
// layout but with "--" before long names, as operators type them.
func printFlags(w io.Writer, fs *flag.FlagSet, keep func(string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) {
			return
		}
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dashes + f.Name
		if typ != "" {
			line += " " + typ
		}
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "[]" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
