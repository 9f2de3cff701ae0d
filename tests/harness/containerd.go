package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	toml "github.com/pelletier/go-toml/v2"
)

// ContainerdVersion selects which containerd StartContainerd runs.
type ContainerdVersion int

const (
	// V2 is the containerd 2.3.7 build of scripts/install-deps.sh, the
	// version lazyfs targets.
	V2 ContainerdVersion = iota
	// V1 is Debian 12's containerd 1.6.20, kept as a compatibility check.
	V1
)

func (v ContainerdVersion) String() string {
	if v == V1 {
		return "containerd 1.6"
	}
	return "containerd " + containerdV2Version
}

const (
	defaultContainerdReadyTimeout = 20 * time.Second
	defaultContainerdStopTimeout  = 15 * time.Second
	// taskCleanupTimeout bounds killing leftover tasks at teardown; a task
	// whose shim hangs must not stall the rest of the teardown.
	taskCleanupTimeout = 30 * time.Second
	// ctrTimeout bounds a ctr call whose ctx has no deadline: a containerd
	// that accepts the call and never answers must not hang the tests.
	ctrTimeout = 5 * time.Minute
)

// ContainerdOptions configures StartContainerd. The zero value runs
// containerd 2.3.7 without the lazyfs proxy plugin.
type ContainerdOptions struct {
	Version ContainerdVersion
	// Env locates the binaries; the zero value means LoadEnv().
	Env Env
	// Namespace is what Ctr and Client use; "default" when empty.
	Namespace string
	// LazyfsAddress and LazyfsRoot configure proxy_plugins.lazyfs (the
	// snapshotter's gRPC socket and its root, exported to containerd); the
	// plugin is left out when LazyfsAddress is empty. containerd dials it
	// lazily, so the snapshotter may start later.
	LazyfsAddress string
	LazyfsRoot    string
	// Peers are more proxy snapshotters (a benchmark's side-by-side
	// peers), configured like lazyfs.
	Peers []ProxySnapshotter
	// Config is merged over the generated config (tables merge key by key,
	// other values replace), e.g. to enable CRI.
	Config map[string]any
	// BeforeStart, if set, runs once the config file is written and
	// before containerd starts: e.g. snapshotterctl config containerd
	// --write, as an operator would run it on a node.
	BeforeStart func(configPath string) error
	// ReadyTimeout and StopTimeout default to 20 s and 15 s.
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
}

// Containerd is a running private containerd: its own root, state, sockets
// and shim socket dir under a short temp dir, so it never meets the
// machine's own containerd.
type Containerd struct {
	opts    ContainerdOptions
	base    string
	address string
	binDir  string
	proc    *process
	// newCgroups are the /sys/fs/cgroup/*/<namespace> dirs that did not exist
	// before start: `ctr run` with cgroupfs creates them and nothing removes
	// them.
	newCgroups []string

	mu       sync.Mutex
	clients  []*client.Client
	shutOnce sync.Once
	shutErr  error
}

// StartContainerd writes a config, starts containerd and waits until it
// answers a Version call.
func StartContainerd(ctx context.Context, opts ContainerdOptions) (_ *Containerd, err error) {
	if opts.Env == (Env{}) {
		if opts.Env, err = LoadEnv(); err != nil {
			return nil, err
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = namespaces.Default
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = defaultContainerdReadyTimeout
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = defaultContainerdStopTimeout
	}
	base, err := newBaseDir("c")
	if err != nil {
		return nil, err
	}
	c := &Containerd{
		opts:       opts,
		base:       base,
		address:    filepath.Join(base, "c.sock"),
		binDir:     opts.Env.ContainerdV2Dir,
		newCgroups: missingCgroups(opts.Namespace),
	}
	if opts.Version == V1 {
		c.binDir = opts.Env.ContainerdV1Dir
	}
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				err = fmt.Errorf("%w (and teardown: %v)", err, cerr)
			}
		}
	}()

	cfg, err := toml.Marshal(mergeConfig(c.config(), opts.Config))
	if err != nil {
		return nil, fmt.Errorf("failed to encode containerd config: %w", err)
	}
	cfgPath := filepath.Join(base, "config.toml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, fmt.Errorf("failed to write containerd config: %w", err)
	}
	if opts.BeforeStart != nil {
		if err := opts.BeforeStart(cfgPath); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(filepath.Join(c.binDir, "containerd"), "--config", cfgPath)
	cmd.Env = c.cmdEnv()
	if c.proc, err = startProcess(opts.Version.String(), filepath.Join(base, "containerd.log"), cmd); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// config is containerd's config for this instance. Every path is private;
// CRI is disabled (the tests drive containerd with ctr and the Go client)
// and so is NRI (it would listen on /var/run/nri).
func (c *Containerd) config() map[string]any {
	cfg := map[string]any{
		"root":             filepath.Join(c.base, "root"),
		"state":            filepath.Join(c.base, "state"),
		"disabled_plugins": []string{"io.containerd.grpc.v1.cri"},
		"grpc":             map[string]any{"address": c.address},
		"ttrpc":            map[string]any{"address": c.address + ".ttrpc"},
		"debug":            map[string]any{"address": filepath.Join(c.base, "debug.sock"), "level": "debug"},
	}
	plugins := map[string]any{
		"io.containerd.internal.v1.opt": map[string]any{"path": filepath.Join(c.base, "opt")},
	}
	proxies := c.opts.proxies()
	if c.opts.Version == V1 {
		cfg["version"] = 2
	} else {
		// Version 3 is accepted and migrated by 2.3.
		cfg["version"] = 3
		// The default socket_dir is /run/containerd/s, shared with the
		// machine's containerd; the kernel limits it to 42 bytes here.
		plugins["io.containerd.shim.v1.manager"] = map[string]any{"socket_dir": filepath.Join(c.base, "s")}
		plugins["io.containerd.nri.v1.nri"] = map[string]any{"disable": true}
		if len(proxies) > 0 {
			// ctr pulls through the transfer service, which only sends the
			// remote-snapshot labels to snapshotters listed here; the list
			// replaces the default, so overlayfs is listed too.
			platform := platforms.DefaultString()
			unpack := []any{map[string]any{"platform": platform, "snapshotter": "overlayfs"}}
			for _, p := range proxies {
				unpack = append(unpack, map[string]any{"platform": platform, "snapshotter": p.Name})
			}
			plugins["io.containerd.transfer.v1.local"] = map[string]any{"unpack_config": unpack}
		}
	}
	cfg["plugins"] = plugins
	if len(proxies) > 0 {
		pp := map[string]any{}
		for _, p := range proxies {
			pp[p.Name] = map[string]any{
				"type":    "snapshot",
				"address": p.Address,
				"exports": map[string]any{
					"root":                               p.Root,
					"enable_remote_snapshot_annotations": "true",
				},
			}
		}
		cfg["proxy_plugins"] = pp
	}
	return cfg
}

// ProxySnapshotter is a proxy snapshotter plugin of containerd's config.
type ProxySnapshotter struct {
	Name, Address, Root string
}

// proxies lists lazyfs (when configured) and the peers.
func (o ContainerdOptions) proxies() []ProxySnapshotter {
	var ps []ProxySnapshotter
	if o.LazyfsAddress != "" {
		ps = append(ps, ProxySnapshotter{Name: "lazyfs", Address: o.LazyfsAddress, Root: o.LazyfsRoot})
	}
	return append(ps, o.Peers...)
}

// mergeConfig returns base with over merged into it: tables merge key by
// key, anything else in over replaces what base has.
func mergeConfig(base, over map[string]any) map[string]any {
	for k, v := range over {
		bt, bok := base[k].(map[string]any)
		ot, ook := v.(map[string]any)
		if bok && ook {
			base[k] = mergeConfig(bt, ot)
		} else {
			base[k] = v
		}
	}
	return base
}

// cmdEnv puts this version's binaries first in PATH: containerd looks for
// the shim on PATH before next to its own binary, and both versions ship
// containerd-shim-runc-v2.
func (c *Containerd) cmdEnv() []string {
	env := []string{
		"PATH=" + c.binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1",
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CONTAINERD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Containerd) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	for {
		var verr error
		if _, err := os.Stat(c.address); err == nil {
			callCtx, cancelCall := context.WithTimeout(ctx, time.Second)
			_, verr = cl.Version(callCtx)
			cancelCall()
			if verr == nil {
				return nil
			}
		}
		if c.proc.exited() {
			return c.proc.exitError()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (last error: %v): %w\n%s", c.opts.Version, verr, ctx.Err(), logTail(c.proc.logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Address is containerd's gRPC socket.
func (c *Containerd) Address() string { return c.address }

// Namespace is the namespace Ctr and Client use.
func (c *Containerd) Namespace() string { return c.opts.Namespace }

// Version is the containerd this is.
func (c *Containerd) Version() ContainerdVersion { return c.opts.Version }

// BaseDir holds containerd's root, state, sockets, config and log.
func (c *Containerd) BaseDir() string { return c.base }

// ConfigPath is the config file containerd was started with.
func (c *Containerd) ConfigPath() string { return filepath.Join(c.base, "config.toml") }

// Binary is the containerd binary of this instance's version.
func (c *Containerd) Binary() string { return filepath.Join(c.binDir, "containerd") }

// Root is containerd's root directory.
func (c *Containerd) Root() string { return filepath.Join(c.base, "root") }

// Client returns a new client of this containerd in its namespace. Shutdown
// closes it.
func (c *Containerd) Client(ctx context.Context) (*client.Client, error) {
	cl, err := client.New(c.address, client.WithDefaultNamespace(c.opts.Namespace))
	if err != nil {
		return nil, fmt.Errorf("failed to create client of %s: %w", c.address, err)
	}
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl, nil
}

// Ctr runs this version's ctr against this containerd and namespace, and
// returns its standard output; the error carries its standard error. Without
// a deadline in ctx, the call is bounded by five minutes.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ctrTimeout)
		defer cancel()
	}
	full := append([]string{"--address", c.address, "--namespace", c.opts.Namespace}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "ctr"), full...)
	// A process ctr leaves behind could inherit its output pipes: do not wait
	// for them long once ctr itself has exited.
	cmd.WaitDelay = time.Second
	cmd.Env = c.cmdEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// CtrRun runs `ctr run` with runc's state and the I/O FIFOs under the base
// dir instead of /run; args follow "run" (flags, image, id, command).
func (c *Containerd) CtrRun(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"run",
		"--runc-root", filepath.Join(c.base, "runc"),
		"--fifo-dir", filepath.Join(c.base, "fifo"),
	}, args...)
	return c.Ctr(ctx, full...)
}

// Logs returns containerd's log file.
func (c *Containerd) Logs() []string { return []string{filepath.Join(c.base, "containerd.log")} }

// Stop kills the tasks left in any namespace, stops containerd (SIGTERM,
// then SIGKILL after StopTimeout), kills shims it left, unmounts everything
// under its base dir and removes the cgroups that `ctr run` created. It is
// idempotent.
func (c *Containerd) Stop() error { return c.shutdown() }

func (c *Containerd) shutdown() error {
	c.shutOnce.Do(func() { c.shutErr = c.doShutdown() })
	return c.shutErr
}

func (c *Containerd) doShutdown() error {
	var errs []error
	if c.proc != nil && !c.proc.exited() {
		errs = append(errs, c.killTasks())
	}
	c.mu.Lock()
	for _, cl := range c.clients {
		_ = cl.Close() // a client the caller closed already says so
	}
	c.clients = nil
	c.mu.Unlock()
	if c.proc != nil {
		if _, inTime := c.proc.stop(c.opts.StopTimeout); !inTime {
			errs = append(errs, fmt.Errorf("%s did not stop within %v: killed", c.opts.Version, c.opts.StopTimeout))
		}
	}
	if _, err := killProcessesUsing(c.base); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, unmountUnder(c.base), c.removeCgroups())
	return errors.Join(errs...)
}

// killTasks kills and deletes every task, so that no container, shim or
// rootfs mount outlives the test. Containers and images stay: they go with
// the root.
func (c *Containerd) killTasks() error {
	ctx, cancel := context.WithTimeout(context.Background(), taskCleanupTimeout)
	defer cancel()
	cl, err := client.New(c.address)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	defer cl.Close()
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("failed to list namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		nsCtx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := cl.Containers(nsCtx)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to list containers in %s: %w", ns, err))
			continue
		}
		for _, ctr := range ctrs {
			task, err := ctr.Task(nsCtx, nil)
			if err != nil {
				continue // no task: nothing runs
			}
			if _, err := task.Delete(nsCtx, client.WithProcessKill); err != nil {
				errs = append(errs, fmt.Errorf("failed to delete task %s/%s: %w", ns, ctr.ID(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// missingCgroups lists /sys/fs/cgroup/<controller>/<ns> dirs that do not
// exist yet.
func missingCgroups(ns string) []string {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	if len(hierarchies) == 0 {
		return nil
	}
	var missing []string
	for _, h := range hierarchies {
		dir := filepath.Join(h, ns)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, dir)
		}
	}
	return missing
}

// removeCgroups removes the namespace cgroups created since start, only when
// empty: a concurrent harness may have containers in a dir of the same name.
func (c *Containerd) removeCgroups() error {
	var errs []error
	for _, dir := range c.newCgroups {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("failed to remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops containerd (see Stop) and removes its base dir.
func (c *Containerd) Close() error {
	return errors.Join(c.shutdown(), removeBaseDir(c.base))
}
