// Package e2e runs lazyfs end to end against real processes: a Debian
// docker-registry, containerd (2.3.7 and Debian's 1.6), runc, FUSE, and the
// project's binaries from bin/. It needs root, /dev/fuse, the tools of
// scripts/install-deps.sh and `make build`; without them it fails, naming
// what is missing, unless LAZYFS_ALLOW_SKIP=1 (package testreq).
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/lazyfs/lazyfs/internal/testreq"
	"github.com/lazyfs/lazyfs/tests/harness"
)

// env is the harness environment, checked once by TestMain.
var env harness.Env

func TestMain(m *testing.M) {
	var err error
	env, err = checkRequirements()
	if err != nil {
		os.Exit(testreq.RequireMain(err))
	}
	os.Exit(m.Run())
}

func checkRequirements() (harness.Env, error) {
	if err := harness.CheckRoot(); err != nil {
		return harness.Env{}, err
	}
	if err := harness.CheckFUSE(); err != nil {
		return harness.Env{}, err
	}
	e, err := harness.LoadEnv()
	if err != nil {
		return harness.Env{}, err
	}
	if err := e.CheckTools(); err != nil {
		return harness.Env{}, err
	}
	if err := e.CheckBinaries("lazyfs-snapshotter"); err != nil {
		return harness.Env{}, fmt.Errorf("%w (the tests run the binaries in %s)", err, e.BinDir)
	}
	return e, nil
}
