package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

const (
	defaultSnapshotterReadyTimeout = 20 * time.Second
	defaultSnapshotterStopTimeout  = 20 * time.Second
)

// SnapshotterOptions configures StartSnapshotter.
type SnapshotterOptions struct {
	// Env locates bin/lazyfs-snapshotter; the zero value means LoadEnv().
	Env Env
	// Config is merged over the generated config (tables merge key by key,
	// other values replace), e.g. {"workers": {"mode": "shared"}}.
	Config map[string]any
	// Args are extra command-line flags.
	Args []string
	// ReadyTimeout bounds the wait for the gRPC socket (default 20 s);
	// StopTimeout is the deadline Stop gives a SIGTERM (default 20 s).
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
}

// Snapshotter is a running lazyfs-snapshotter with its root, sockets, logs
// and config under a short temp dir. It can be stopped, killed and
// restarted on the same dirs.
type Snapshotter struct {
	opts      SnapshotterOptions
	base      string
	cfgPath   string
	debugAddr string

	mu   sync.Mutex
	proc *process // the current run; replaced by Restart
}

// StartSnapshotter writes a config and starts
// `lazyfs-snapshotter --config <it> --log-level debug`, and waits until its
// gRPC socket accepts connections.
func StartSnapshotter(ctx context.Context, opts SnapshotterOptions) (_ *Snapshotter, err error) {
	if opts.Env == (Env{}) {
		if opts.Env, err = LoadEnv(); err != nil {
			return nil, err
		}
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = defaultSnapshotterReadyTimeout
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = defaultSnapshotterStopTimeout
	}
	if err := opts.Env.CheckBinaries("lazyfs-snapshotter"); err != nil {
		return nil, err
	}
	base, err := newBaseDir("s")
	if err != nil {
		return nil, err
	}
	s := &Snapshotter{opts: opts, base: base, cfgPath: filepath.Join(base, "config.toml")}
	defer func() {
		if err != nil {
			if cerr := s.Close(); cerr != nil {
				err = fmt.Errorf("%w (and teardown: %v)", err, cerr)
			}
		}
	}()
	if s.debugAddr, err = freeLoopbackAddr(); err != nil {
		return nil, err
	}
	if err := s.writeConfig(opts.Config); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// writeConfig writes the generated config with extra merged over it.
func (s *Snapshotter) writeConfig(extra map[string]any) error {
	cfg, err := toml.Marshal(mergeConfig(s.config(), extra))
	if err != nil {
		return fmt.Errorf("failed to encode snapshotter config: %w", err)
	}
	if err := os.WriteFile(s.cfgPath, cfg, 0o644); err != nil {
		return fmt.Errorf("failed to write snapshotter config: %w", err)
	}
	return nil
}

// RestartWith is Restart with a new config: extra is merged over the
// generated config, as SnapshotterOptions.Config is at start.
func (s *Snapshotter) RestartWith(ctx context.Context, extra map[string]any) error {
	if code, inTime := s.Stop(); !inTime {
		return fmt.Errorf("snapshotter did not stop within %v (exit code %d): killed, not restarted", s.opts.StopTimeout, code)
	}
	s.opts.Config = extra
	if err := s.writeConfig(extra); err != nil {
		return err
	}
	return s.start(ctx)
}

func (s *Snapshotter) config() map[string]any {
	return map[string]any{
		"root":      s.Root(),
		"address":   s.Address(),
		"run_dir":   s.RunDir(),
		"log_level": "debug",
		"log_dir":   s.LogDir(),
		"debug":     map[string]any{"address": s.debugAddr},
		// Never the machine's own containerd: a link that UseContainerd
		// points at the test's private one (until then, lazyfs cannot
		// tell images apart and takes the safe side).
		"containerd": map[string]any{"address": s.containerdLink()},
	}
}

// containerdLink is the path the snapshotter dials containerd at.
func (s *Snapshotter) containerdLink() string { return filepath.Join(s.base, "containerd.sock") }

// UseContainerd points the snapshotter's [containerd] address at the
// socket of a containerd started after it (the snapshotter dials it only
// when it needs it: layers.verify = "before-share", forged layers).
func (s *Snapshotter) UseContainerd(address string) error {
	if err := os.Symlink(address, s.containerdLink()); err != nil {
		return fmt.Errorf("failed to point the snapshotter at containerd %s: %w", address, err)
	}
	return nil
}

func (s *Snapshotter) start(ctx context.Context) error {
	args := append([]string{"--config", s.cfgPath, "--log-level", "debug"}, s.opts.Args...)
	cmd := exec.Command(s.opts.Env.SnapshotterBin(), args...)
	// lazyfsd is looked up next to the snapshotter, then on PATH.
	cmd.Env = append(withoutVar(os.Environ(), "PATH"), "PATH="+s.opts.Env.BinDir+":"+os.Getenv("PATH"))
	proc, err := startProcess("lazyfs-snapshotter", s.logPath(), cmd)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	return s.waitReady(ctx, proc)
}

func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// waitReady waits until the gRPC socket accepts a connection: the
// snapshotter listens only once it is ready to serve.
func (s *Snapshotter) waitReady(ctx context.Context, proc *process) error {
	return waitSocket(ctx, proc, s.Address(), s.opts.ReadyTimeout)
}

// waitSocket waits up to timeout until proc's unix socket at addr accepts a
// connection, and fails at once if proc exits first.
func waitSocket(ctx context.Context, proc *process, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		if proc.exited() {
			return proc.exitError()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s (last error: %v): %w\n%s", proc.name, addr, err, ctx.Err(), logTail(proc.logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Snapshotter) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Address is the gRPC socket containerd's proxy plugin dials.
func (s *Snapshotter) Address() string { return filepath.Join(s.base, "run", "snapshotter.sock") }

// Root is the snapshotter's root (containerd's exports root).
func (s *Snapshotter) Root() string { return filepath.Join(s.base, "root") }

// RunDir holds the management socket and the workers' sockets.
func (s *Snapshotter) RunDir() string { return filepath.Join(s.base, "run") }

// LogDir holds the workers' logs.
func (s *Snapshotter) LogDir() string { return filepath.Join(s.base, "log") }

// DebugAddr is the host:port serving pprof and /metrics.
func (s *Snapshotter) DebugAddr() string { return s.debugAddr }

// ConfigPath is the generated config file.
func (s *Snapshotter) ConfigPath() string { return s.cfgPath }

// BaseDir holds everything of this snapshotter.
func (s *Snapshotter) BaseDir() string { return s.base }

// Pid is the process id of the current run.
func (s *Snapshotter) Pid() int { return s.current().pid() }

func (s *Snapshotter) logPath() string { return filepath.Join(s.base, "snapshotter.log") }

// Stop sends SIGTERM and waits up to StopTimeout. It returns the exit code
// (-1 when a signal ended it) and whether it exited within the deadline; a
// snapshotter that did not is killed. Stopping a stopped snapshotter returns
// its last exit code.
func (s *Snapshotter) Stop() (exitCode int, exitedInTime bool) {
	return s.current().stop(s.opts.StopTimeout)
}

// Kill sends SIGKILL, as a crash would: workers and their mounts stay.
func (s *Snapshotter) Kill() {
	s.current().kill()
}

// Restart stops a running snapshotter (as Stop does) and starts it again on
// the same config and dirs.
func (s *Snapshotter) Restart(ctx context.Context) error {
	if code, inTime := s.Stop(); !inTime {
		return fmt.Errorf("snapshotter did not stop within %v (exit code %d): killed, not restarted", s.opts.StopTimeout, code)
	}
	return s.start(ctx)
}

// Logs returns the snapshotter's log and every worker log under LogDir.
func (s *Snapshotter) Logs() []string {
	logs := []string{s.logPath()}
	_ = filepath.WalkDir(s.LogDir(), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			logs = append(logs, path)
		}
		return nil
	})
	return logs
}

// shutdown stops the snapshotter, kills the workers it left (they outlive
// it by design) and unmounts everything under its base dir.
func (s *Snapshotter) shutdown() error {
	var errs []error
	if p := s.current(); p != nil {
		if _, inTime := p.stop(s.opts.StopTimeout); !inTime {
			errs = append(errs, fmt.Errorf("snapshotter did not stop within %v: killed", s.opts.StopTimeout))
		}
	}
	if _, err := killProcessesUsing(s.base); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, unmountUnder(s.base))
	return errors.Join(errs...)
}

// Close stops the snapshotter and its workers, unmounts and removes its dirs.
func (s *Snapshotter) Close() error {
	return errors.Join(s.shutdown(), removeBaseDir(s.base))
}
