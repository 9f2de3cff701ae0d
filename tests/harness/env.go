// Package harness starts and tears down the real processes the end-to-end
// tests and the demo run against: a Debian docker-registry, containerd (the
// 2.3.7 build or Debian's 1.6), the lazyfs snapshotter, and ctr. It also builds
// and pushes test images and compares root filesystems.
//
// Every process gets its own directories, sockets and free ports under a temp
// dir, because the machines are not clean: other containerds, registries or
// mounts may exist, and only what the harness started is ever stopped,
// unmounted or removed. In tests, pass each started process to Track so that
// it is torn down by t.Cleanup and its logs are printed when the test fails;
// other programs call Close themselves.
package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lazyfs/lazyfs/internal/testreq"
)

// modulePath identifies the repository's go.mod when searching for the root.
const modulePath = "github.com/lazyfs/lazyfs"

// containerdV2Version is the containerd build scripts/install-deps.sh makes.
const containerdV2Version = "2.3.7"

// Env holds the paths of the binaries the harness runs.
type Env struct {
	// RepoRoot is the directory holding the project's go.mod.
	RepoRoot string
	// BinDir holds the project's binaries, built by `make build`.
	BinDir string
	// ContainerdV2Dir holds containerd, containerd-shim-runc-v2 and ctr 2.3.7,
	// built by scripts/install-deps.sh.
	ContainerdV2Dir string
	// ContainerdV1Dir holds Debian's containerd 1.6 binaries and its shim.
	ContainerdV1Dir string
}

// LoadEnv finds the repository root ($LAZYFS_REPO, else the first directory
// upwards from the working directory whose go.mod declares the lazyfs module)
// and derives the other paths from it and $LAZYFS_TOOLS.
func LoadEnv() (Env, error) {
	root := os.Getenv("LAZYFS_REPO")
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return Env{}, fmt.Errorf("failed to get working directory: %w", err)
		}
		root, err = findRepoRoot(wd)
		if err != nil {
			return Env{}, err
		}
	}
	tools := os.Getenv("LAZYFS_TOOLS")
	if tools == "" {
		tools = "/var/cache/lazyfs-tools"
	}
	return Env{
		RepoRoot:        root,
		BinDir:          filepath.Join(root, "bin"),
		ContainerdV2Dir: filepath.Join(tools, "containerd-"+containerdV2Version),
		ContainerdV1Dir: "/usr/bin",
	}, nil
}

func findRepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if declaresModule(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s above %s (set LAZYFS_REPO)", modulePath, dir)
		}
	}
}

func declaresModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

// Bin returns the path of one of the project's binaries.
func (e Env) Bin(name string) string { return filepath.Join(e.BinDir, name) }

// SnapshotterBin is the path of lazyfs-snapshotter.
func (e Env) SnapshotterBin() string { return e.Bin("lazyfs-snapshotter") }

// Busybox returns the path of the static busybox the test images ship.
func (e Env) Busybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is not installed (run scripts/install-deps.sh): %w", err)
	}
	return p, nil
}

// CheckRoot reports an error unless the process runs as root, which
// mounting, containerd and runc need.
func CheckRoot() error { return testreq.CheckRoot() }

// CheckFUSE reports an error unless /dev/fuse is usable.
func CheckFUSE() error { return testreq.CheckFUSE() }

// CheckTools reports the external tools that are missing, naming the script
// that installs them.
func (e Env) CheckTools() error {
	var missing []string
	for _, name := range []string{"docker-registry", "skopeo", "runc", "busybox"} {
		if _, err := exec.LookPath(name); err != nil {
			missing = append(missing, name)
		}
	}
	for _, dir := range []string{e.ContainerdV2Dir, e.ContainerdV1Dir} {
		for _, name := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
			if !isExecutable(filepath.Join(dir, name)) {
				missing = append(missing, filepath.Join(dir, name))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run scripts/install-deps.sh", strings.Join(missing, ", "))
	}
	return nil
}

// CheckBinaries reports the project binaries that have not been built.
func (e Env) CheckBinaries(names ...string) error {
	var missing []string
	for _, name := range names {
		if !isExecutable(e.Bin(name)) {
			missing = append(missing, e.Bin(name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make build` first", strings.Join(missing, ", "))
	}
	return nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Require fails t when err is not nil, or skips it when a person allowed
// skips (testreq: LAZYFS_ALLOW_SKIP=1).
func Require(t testing.TB, err error) {
	t.Helper()
	testreq.Require(t, err)
}

// RequireRoot needs root (mount, containerd, runc).
func RequireRoot(t testing.TB) {
	t.Helper()
	testreq.RequireRoot(t)
}

// RequireFUSE needs root and a usable /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	testreq.RequireFUSE(t)
}

// RequireTools needs root and every external tool the harness runs.
func RequireTools(t testing.TB) Env {
	t.Helper()
	RequireRoot(t)
	env, err := LoadEnv()
	Require(t, err)
	Require(t, env.CheckTools())
	return env
}
