package ctl

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/config"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings of stdout
		stderr     []string // substrings of stderr
		quietError bool     // nothing on stderr
	}{
		{name: "no command", args: nil, code: exitUsage, stderr: []string{"Usage: snapshotterctl", "daemons COMMAND", "image COMMAND"}},
		{name: "help", args: []string{"--help"}, code: exitOK, stdout: []string{"version", "daemons COMMAND", "image COMMAND", "--run-dir", "--address"}, quietError: true},
		{name: "help command", args: []string{"help"}, code: exitOK, stdout: []string{"daemons COMMAND"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate"`, "snapshotterctl --help"}},
		{name: "unknown global flag", args: []string{"--nope", "version"}, code: exitUsage, stderr: []string{"flag provided but not defined: -nope"}},
		{name: "group without command", args: []string{"daemons"}, code: exitUsage, stderr: []string{"list", "inspect", "restart ID", "logs"}},
		{name: "group help", args: []string{"daemons", "--help"}, code: exitOK, stdout: []string{"Usage: snapshotterctl [global flags] daemons COMMAND", "list", "inspect ID", "logs ID"}},
		{name: "unknown subcommand", args: []string{"image", "push"}, code: exitUsage, stderr: []string{`unknown command "push"`, "pull, convert", "snapshotterctl image --help"}},
		{name: "version", args: []string{"version"}, code: exitOK, stdout: []string{"snapshotterctl dev ("}, quietError: true},
		{name: "version with arguments", args: []string{"version", "x"}, code: exitUsage, stderr: []string{"snapshotterctl version: unexpected arguments"}},
		{name: "list help", args: []string{"daemons", "list", "--help"}, code: exitOK, stdout: []string{"Usage: snapshotterctl daemons list [flags]", "-o format", "--timeout", "Global flags:", "--run-dir", "--socket", "--config"}},
		{name: "list with arguments", args: []string{"daemons", "list", "x"}, code: exitUsage, stderr: []string{"daemons list: unexpected arguments"}},
		{name: "inspect help", args: []string{"daemons", "inspect", "-h"}, code: exitOK, stdout: []string{"inspect [flags] ID", "-o format"}},
		{name: "inspect without id", args: []string{"daemons", "inspect"}, code: exitUsage, stderr: []string{"missing worker ID", "snapshotterctl daemons inspect --help"}},
		{name: "inspect two ids", args: []string{"daemons", "inspect", "a", "b"}, code: exitUsage, stderr: []string{"expected one worker ID"}},
		{name: "inspect bad id", args: []string{"daemons", "inspect", "../etc"}, code: exitUsage, stderr: []string{`"../etc" is not a worker id`}},
		{name: "logs help", args: []string{"daemons", "logs", "--help"}, code: exitOK, stdout: []string{"logs [flags] ID", "--tail lines", "-f\n", "(default 100)"}},
		{name: "logs negative lines", args: []string{"daemons", "logs", "w", "--tail", "-1"}, code: exitUsage, stderr: []string{"--tail -1"}},
		{name: "restart without id", args: []string{"daemons", "restart"}, code: exitUsage, stderr: []string{"missing worker ID"}},
		{name: "list bad output", args: []string{"daemons", "list", "-o", "yaml"}, code: exitUsage, stderr: []string{`invalid value "yaml" for flag -o`}},
		{name: "status help", args: []string{"status", "--help"}, code: exitOK, stdout: []string{"Usage: snapshotterctl status [flags]", "-o format"}},
		{name: "mounts list help", args: []string{"mounts", "list", "--help"}, code: exitOK, stdout: []string{"Usage: snapshotterctl mounts list [flags]"}},
		{name: "logs bad lines", args: []string{"daemons", "logs", "w", "-n", "many"}, code: exitUsage, stderr: []string{`invalid value "many" for flag -n`}},
		{name: "pull help", args: []string{"image", "pull", "--help"}, code: exitOK, stdout: []string{"pull [flags] REF", "--plain-http", "--hosts-dir", "--snapshotter", "--namespace"}},
		{name: "pull without ref", args: []string{"image", "pull"}, code: exitUsage, stderr: []string{"expected one image reference"}},
		{name: "convert help", args: []string{"image", "convert", "--help"}, code: exitOK, stdout: []string{"convert [flags] SRC DST", "--chunk-size", "--prioritize", "--level", "--push", "--plain-http"}},
		{name: "convert one argument", args: []string{"image", "convert", "a"}, code: exitUsage, stderr: []string{"expected SRC and DST"}},
		{name: "convert bad chunk size", args: []string{"image", "convert", "a", "b", "--chunk-size", "4 parsecs"}, code: exitUsage, stderr: []string{"for flag -chunk-size", "unknown unit"}},
		{name: "convert plain http without push", args: []string{"image", "convert", "a", "b", "--plain-http"}, code: exitUsage, stderr: []string{"only apply with --push"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tc.quietError && stderr != "" {
				t.Errorf("stderr is not empty:\n%s", stderr)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		positional []string
		n          int
		follow     bool
		wantErr    bool
	}{
		{name: "flags first", args: []string{"-n", "5", "-f", "w1"}, positional: []string{"w1"}, n: 5, follow: true},
		{name: "flags last", args: []string{"w1", "-f", "-n", "7"}, positional: []string{"w1"}, n: 7, follow: true},
		{name: "flags between", args: []string{"a", "-n=3", "b"}, positional: []string{"a", "b"}, n: 3},
		{name: "double dash ends flags", args: []string{"-f", "--", "-n", "x"}, positional: []string{"-n", "x"}, n: 100, follow: true},
		{name: "long form", args: []string{"--n", "2", "w"}, positional: []string{"w"}, n: 2},
		{name: "no arguments", args: nil, positional: nil, n: 100},
		{name: "unknown flag after positional", args: []string{"w", "--nope"}, wantErr: true},
		{name: "missing value", args: []string{"w", "-n"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("test")
			n := fs.Int("n", 100, "")
			follow := fs.Bool("f", false, "")
			positional, err := parseInterspersed(fs, tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %q without error", tc.args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(positional, tc.positional) || *n != tc.n || *follow != tc.follow {
				t.Errorf("got positional %q n=%d f=%v, want %q n=%d f=%v", positional, *n, *follow, tc.positional, tc.n, tc.follow)
			}
		})
	}
}

func TestGlobalsBeforeAndAfterCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--run-dir", "/x/run", "--socket", "/x/api.sock", "--namespace", "k8s.io", "version"},
		{"version", "--run-dir", "/x/run", "--socket", "/x/api.sock", "--namespace", "k8s.io"},
		{"--run-dir", "/x/run", "version", "--socket", "/x/api.sock", "--namespace=k8s.io"},
	} {
		a := &app{g: defaultGlobals()}
		top := newFlagSet(progName)
		a.g.register(top)
		if err := top.Parse(args); err != nil {
			t.Fatal(err)
		}
		fs := newFlagSet("leaf")
		a.g.register(fs)
		if _, err := parseInterspersed(fs, top.Args()[1:]); err != nil {
			t.Fatal(err)
		}
		if a.g.runDir != "/x/run" || a.g.socket != "/x/api.sock" || a.g.namespace != "k8s.io" || a.g.address != defaultAddress || a.g.snapshotter != "lazyfs" {
			t.Errorf("%q: globals %+v", args, a.g)
		}
	}
}

func TestGlobalsConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("run_dir = \"/srv/run\"\nlog_dir = \"/srv/log\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("run_dir = 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		g              globals
		runDir, socket string
		wantErr        string
	}{
		{name: "from the file", g: globals{configPath: good}, runDir: "/srv/run", socket: "/srv/run/api.sock"},
		{name: "run dir flag overrides the file", g: globals{configPath: good, runDir: "/flag/run"}, runDir: "/flag/run", socket: "/flag/run/api.sock"},
		{name: "socket flag", g: globals{configPath: good, socket: "/s.sock"}, runDir: "/srv/run", socket: "/s.sock"},
		{name: "flags spare reading a broken file", g: globals{configPath: bad, runDir: "/flag/run"}, runDir: "/flag/run", socket: "/flag/run/api.sock"},
		{name: "broken file", g: globals{configPath: bad}, wantErr: bad + ":1: run_dir"},
		{name: "missing file asked for", g: globals{configPath: filepath.Join(dir, "none.toml")}, wantErr: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runDir, err := tc.g.resolvedRunDir()
			if err == nil {
				var socket string
				socket, err = tc.g.mgmtSocket()
				if err == nil && (runDir != tc.runDir || socket != tc.socket) {
					t.Errorf("run dir %s, socket %s; want %s, %s", runDir, socket, tc.runDir, tc.socket)
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestGlobalsDefaultConfigOptional guards the snapshotter's own rule: no
// file at the default path means the defaults, not an error. The default
// path points into the test's temp dir: the machine's own
// /etc/lazyfs/config.toml, if any, must not decide the result.
func TestGlobalsDefaultConfigOptional(t *testing.T) {
	old := defaultConfigPath
	defaultConfigPath = filepath.Join(t.TempDir(), "config.toml")
	t.Cleanup(func() { defaultConfigPath = old })
	g := defaultGlobals()
	runDir, err := g.resolvedRunDir()
	if err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	if runDir != def.RunDir {
		t.Errorf("run dir %s; want the default %s", runDir, def.RunDir)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	// Every leaf's --help must list each of its flags.
	var walk func(path []string, c *command)
	walk = func(path []string, c *command) {
		if c.setup == nil {
			for _, s := range c.subs {
				walk(append(slices.Clone(path), s.name), s)
			}
			return
		}
		fs := newFlagSet("x")
		c.setup(fs)
		code, stdout, _ := runCLI(t, append(slices.Clone(path), "--help")...)
		if code != exitOK {
			t.Errorf("%q --help: exit status %d", path, code)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(stdout, "-"+f.Name+" ") && !strings.Contains(stdout, "-"+f.Name+"\n") {
				t.Errorf("%q --help does not list -%s:\n%s", path, f.Name, stdout)
			}
		})
	}
	walk(nil, commands())
}
