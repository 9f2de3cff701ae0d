package ctl

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"

	"github.com/lazyfs/lazyfs/containerdconf"
	"github.com/lazyfs/lazyfs/failover"
)

// doctorProbeTimeout bounds each live probe (containerd, the proxy plugin
// through it, the management API): a wedged daemon is a finding, not a hang.
const doctorProbeTimeout = 10 * time.Second

func doctorCommand() *command {
	return &command{
		name:    "doctor",
		summary: "check that this node's containerd and kernel are set up for lazyfs",
		help: `Checks the live node: containerd's version and its configuration as loaded
(` + "`containerd config dump`" + `: defaults, imports and migration applied), the lazyfs
proxy plugin and whether containerd reaches the snapshotter through it, CRI's
snapshotter and annotation settings, the transfer service's unpack platforms
(2.x), the hosts.toml dirs containerd and lazyfs read, the image file system
path CRI reports, the snapshotter's health, and the kernel's FUSE facts.

Each problem names the key to change. Exit status: 0 no problem (warnings
may be printed), 1 at least one problem (FAIL lines), 2 the command line is
wrong.`,
		setup: func(fs *flag.FlagSet) action {
			var node nodeFlags
			node.register(fs)
			out := outputFlag(fs, "", "json")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected arguments %q", args)
				}
				findings := a.doctor(ctx, &node, kernelFacts)
				if *out == "json" {
					if err := writeJSON(a.stdout, findings); err != nil {
						return err
					}
				} else if err := writeFindings(a.stdout, findings); err != nil {
					return err
				}
				if n := countFailed(findings); n > 0 {
					return fmt.Errorf("%d problem(s) found: %w", n, errdefs.ErrFailedPrecondition)
				}
				return nil
			}
		},
	}
}

// doctor runs every check; a check that cannot run is itself a finding.
func (a *app) doctor(ctx context.Context, node *nodeFlags, kernel func() []containerdconf.Finding) []containerdconf.Finding {
	var out []containerdconf.Finding
	add := func(f ...containerdconf.Finding) { out = append(out, f...) }
	fail := func(check, key, format string, args ...any) {
		add(containerdconf.Finding{Severity: containerdconf.Fail, Check: check, Key: key, Message: fmt.Sprintf(format, args...)})
	}

	p, err := a.lazyfsParams()
	if err != nil {
		fail("lazyfs config", "--config", "%v", err)
		return out
	}
	v, err := node.detectVersion(ctx)
	if err != nil {
		fail("containerd version", "--containerd-bin", "%v", err)
		return append(out, kernel()...)
	}
	switch {
	case !v.V2():
		add(containerdconf.Finding{Severity: containerdconf.Warn, Check: "containerd version", Message: fmt.Sprintf("containerd %s: the 1.x line is past its end of life; lazyfs targets 2.3", v)})
	default:
		add(containerdconf.Finding{Severity: containerdconf.Pass, Check: "containerd version", Message: "containerd " + v.String()})
	}

	dump, err := node.dump(ctx)
	var loaded containerdconf.Loaded
	if err == nil {
		loaded, err = containerdconf.ParseLoaded(dump)
	}
	if err != nil {
		fail("containerd config", "--containerd-config", "containerd cannot load %s: %v", node.config, err)
	} else {
		add(containerdconf.Check(v, loaded, p)...)
		add(checkImageFS(v, loaded, p))
	}
	add(a.checkLive(ctx)...)
	if cfg, err := a.g.config(); err == nil {
		add(checkContainerdAddress(cfg.Containerd.Address, cfg.Containerd.Snapshotter, a.g.address, a.g.snapshotter)...)
	}
	add(a.checkSnapshotterHealth(ctx))
	add(checkStartOrder("/"))
	return append(out, kernel()...)
}

// checkImageFS: the directory CRI reports to the kubelet as the image file
// system must exist, or the kubelet's disk-pressure checks fail on it.
func checkImageFS(v containerdconf.Version, l containerdconf.Loaded, p containerdconf.Params) containerdconf.Finding {
	path := containerdconf.ImageFSPath(v, l.Root(), p)
	if _, err := os.Stat(path); err != nil {
		key := "root (lazyfs's config)"
		fix := "it is lazyfs's root, which the snapshotter creates when it starts: is it running with this config?"
		if path != p.Root {
			key = path
			fix = fmt.Sprintf("containerd %s ignores the exported root: create it with ln -s %s %s (snapshotterctl config containerd --write does)", v, p.Root, path)
		}
		return containerdconf.Finding{Severity: containerdconf.Fail, Check: "image file system", Key: key,
			Message: fmt.Sprintf("CRI reports %s, which does not exist: %s", path, fix)}
	}
	return containerdconf.Finding{Severity: containerdconf.Pass, Check: "image file system", Message: "CRI reports " + path}
}

// checkContainerdAddress: lazyfs asks containerd which images reach a
// layer (layers.verify = "before-share") and removes forged snapshots
// through it. Pointed at no containerd, it cannot tell images apart, and a
// container on a layer not proven yet waits for the proof; pointed at
// another containerd, it asks the wrong one.
func checkContainerdAddress(lazyfsAddr, lazyfsName, containerdAddr, pluginName string) []containerdconf.Finding {
	const check = "snapshotter's containerd"
	containerdAddr = strings.TrimPrefix(containerdAddr, "unix://")
	var out []containerdconf.Finding
	switch lst, err := os.Stat(lazyfsAddr); {
	case lazyfsAddr == "":
		out = append(out, containerdconf.Finding{Severity: containerdconf.Warn, Check: check, Key: "[containerd] address (lazyfs's config)",
			Message: fmt.Sprintf("empty: lazyfs cannot tell images apart, so a container on a layer not proven yet waits for the proof; set it to %s", containerdAddr)})
	case err != nil:
		out = append(out, containerdconf.Finding{Severity: containerdconf.Fail, Check: check, Key: "[containerd] address (lazyfs's config)",
			Message: fmt.Sprintf("%v: lazyfs cannot ask containerd, so a container on a layer not proven yet waits for the proof; set it to %s", err, containerdAddr)})
	default:
		if cst, err := os.Stat(containerdAddr); err == nil && !os.SameFile(lst, cst) {
			out = append(out, containerdconf.Finding{Severity: containerdconf.Warn, Check: check, Key: "[containerd] address (lazyfs's config)",
				Message: fmt.Sprintf("lazyfs asks the containerd at %s, not the one at %s: is that the containerd that pulls through lazyfs?", lazyfsAddr, containerdAddr)})
		}
	}
	if lazyfsName != pluginName {
		out = append(out, containerdconf.Finding{Severity: containerdconf.Fail, Check: check, Key: "[containerd] snapshotter (lazyfs's config)",
			Message: fmt.Sprintf("%q, but containerd knows lazyfs as %q: forged layers' snapshots would be looked for under the wrong name", lazyfsName, pluginName)})
	}
	if len(out) == 0 {
		out = append(out, containerdconf.Finding{Severity: containerdconf.Pass, Check: check, Message: "lazyfs asks the containerd at " + lazyfsAddr})
	}
	return out
}

// checkLive asks the running containerd for the lazyfs plugin and, through
// it, the snapshotter: the path every pull takes.
func (a *app) checkLive(ctx context.Context) []containerdconf.Finding {
	ctx, cancel := context.WithTimeout(ctx, doctorProbeTimeout)
	defer cancel()
	cctx, c, err := a.connect(ctx)
	if err != nil {
		return []containerdconf.Finding{{Severity: containerdconf.Fail, Check: "containerd", Key: "--address", Message: err.Error()}}
	}
	defer c.Close()
	_, err = c.SnapshotService(a.g.snapshotter).Stat(cctx, "lazyfs-doctor-probe")
	if err != nil && !errdefs.IsNotFound(err) {
		return []containerdconf.Finding{{Severity: containerdconf.Fail, Check: "proxy plugin reachable",
			Key:     "[proxy_plugins." + a.g.snapshotter + "] address",
			Message: fmt.Sprintf("containerd cannot reach the snapshotter (is lazyfs-snapshotter running, on the address containerd dials?): %v", err)}}
	}
	return []containerdconf.Finding{{Severity: containerdconf.Pass, Check: "proxy plugin reachable", Message: "containerd reaches lazyfs-snapshotter"}}
}

func (a *app) checkSnapshotterHealth(ctx context.Context) containerdconf.Finding {
	c, ctx, cancel, err := a.mgmtWithin(ctx, doctorProbeTimeout)
	defer cancel()
	if err == nil {
		st, serr := c.Status(ctx)
		if serr == nil && st.Health != "ok" {
			return containerdconf.Finding{Severity: containerdconf.Warn, Check: "snapshotter health",
				Message: fmt.Sprintf("%s: %s (snapshotterctl status)", st.Health, strings.Join(st.Problems, "; "))}
		}
		if serr == nil {
			return containerdconf.Finding{Severity: containerdconf.Pass, Check: "snapshotter health", Message: fmt.Sprintf("ok, %d workers, %d lazy layers", st.Workers, st.Mounts)}
		}
		err = serr
	}
	return containerdconf.Finding{Severity: containerdconf.Fail, Check: "snapshotter health", Key: "run_dir",
		Message: fmt.Sprintf("the management API does not answer: %v", err)}
}

// kernelFacts checks what lazy mounts need from the kernel: /dev/fuse, the
// fuse and overlay file systems, and FUSE_NOTIFY_RESEND (6.9) for worker
// failover without hung readers.
func kernelFacts() []containerdconf.Finding {
	var out []containerdconf.Finding
	if st, err := os.Stat("/dev/fuse"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		out = append(out, containerdconf.Finding{Severity: containerdconf.Fail, Check: "kernel: /dev/fuse", Message: fmt.Sprintf("no /dev/fuse character device (modprobe fuse): %v", err)})
	} else {
		out = append(out, containerdconf.Finding{Severity: containerdconf.Pass, Check: "kernel: /dev/fuse", Message: "present"})
	}
	fsTypes, err := readFilesystems("/proc/filesystems")
	for _, t := range []string{"fuse", "overlay"} {
		if err != nil || !fsTypes[t] {
			out = append(out, containerdconf.Finding{Severity: containerdconf.Fail, Check: "kernel: " + t, Message: fmt.Sprintf("file system %q not in /proc/filesystems (modprobe %s)", t, t)})
		} else {
			out = append(out, containerdconf.Finding{Severity: containerdconf.Pass, Check: "kernel: " + t, Message: "supported"})
		}
	}
	release, resend, err := failover.KernelRelease()
	switch {
	case err != nil:
		out = append(out, containerdconf.Finding{Severity: containerdconf.Warn, Check: "kernel: FUSE_NOTIFY_RESEND", Message: err.Error()})
	case !resend:
		out = append(out, containerdconf.Finding{Severity: containerdconf.Warn, Check: "kernel: FUSE_NOTIFY_RESEND",
			Message: fmt.Sprintf("Linux %s lacks it (6.9+): reads a dying worker held hang after a failover", release)})
	default:
		out = append(out, containerdconf.Finding{Severity: containerdconf.Pass, Check: "kernel: FUSE_NOTIFY_RESEND", Message: "Linux " + release})
	}
	return out
}

func readFilesystems(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	types := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			types[fields[len(fields)-1]] = true
		}
	}
	return types, sc.Err()
}

func countFailed(fs []containerdconf.Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity == containerdconf.Fail {
			n++
		}
	}
	return n
}

// writeFindings prints one line per finding: verdict, check, and for a
// problem the key to change.
func writeFindings(w io.Writer, fs []containerdconf.Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fs {
		msg := f.Message
		if f.Key != "" && f.Severity != containerdconf.Pass {
			msg = f.Key + ": " + msg
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Severity, f.Check, msg)
	}
	return tw.Flush()
}
