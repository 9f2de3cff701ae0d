package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/lazyfs/lazyfs/layer"
	"github.com/lazyfs/lazyfs/layout"
)

// fakeBinary writes a bash script to stand in for lazyfsd and returns its
// path. Its arguments are lazyfsd's: --config <run_dir>/workers/config.json
// --id <id> --ready-fd 3. A script that keeps running execs `sleep` named
// after its config (exec -a), so that workerPIDs still finds it by its run
// dir.
func fakeBinary(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lazyfsd")
	if err := os.WriteFile(path, []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeLayer is a valid layer of image tag, whose worker is "img-" and
// the start of the tag's manifest digest.
func fakeLayer(tag string) layer.Layer {
	return layer.Layer{
		ImageRef:       "127.0.0.1:5000/a:" + tag,
		LayerDigest:    digest.FromString("layer of " + tag),
		TOCDigest:      digest.FromString("toc of " + tag),
		ManifestDigest: digest.FromString("manifest of " + tag),
	}
}

// mountFake mounts fakeLayer(tag) through s, whose workers are fakes that
// never get as far as a mount, and returns Mount's error.
func mountFake(t *testing.T, s *Supervisor, tag string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := s.Mount(ctx, "m-"+tag, t.TempDir(), fakeLayer(tag))
	if err == nil {
		t.Fatalf("Mount through a worker that never gets ready succeeded")
	}
	return err
}

// newFakeSupervisor starts a supervisor on fake workers; Cleanup closes it
// and kills what a failure left running of its processes.
func newFakeSupervisor(t *testing.T, opts Options) *Supervisor {
	t.Helper()
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background(), false); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, pid := range workerPIDs(opts.RunDir) {
			t.Errorf("cleanup: killing leftover process %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			waitGone(t, pid)
		}
	})
	return s
}

// noWorkerLeft fails unless every process of run dir is gone.
func noWorkerLeft(t *testing.T, runDir string) {
	t.Helper()
	eventually(t, "the worker that failed to start is stopped", func() bool { return len(workerPIDs(runDir)) == 0 })
}

// TestWorkerExitingBeforeReadyIsReported: a worker that dies at start-up
// fails the mount at once, with an error that says so and names its log
// file, and what it wrote is in that file (0600, in a 0700 directory); its
// socket directory is 0700.
func TestWorkerExitingBeforeReadyIsReported(t *testing.T) {
	opts := workerConfigOptions(t)
	opts.Binary = fakeBinary(t, `echo "fake worker: cannot start" >&2; exit 3`)
	s := newFakeSupervisor(t, opts)
	err := mountFake(t, s, "v1")
	id := s.workerID(fakeLayer("v1"))
	logFile := layout.LogDir(opts.LogDir).WorkerLog(id)
	if !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), logFile) {
		t.Errorf("Mount: %v; want the worker's exit named, with its log %s", err, logFile)
	}
	if st := s.Status(); st.Workers != 0 {
		t.Errorf("a worker that never got ready is counted: %+v", st)
	}
	eventually(t, "the worker's output reaches its log", func() bool {
		data, _ := os.ReadFile(logFile)
		return strings.Contains(string(data), "fake worker: cannot start")
	})
	// Its socket dir is the worker's alone: a socket in it is reachable
	// by no one else, whatever its own mode.
	for path, want := range map[string]os.FileMode{logFile: 0o600, filepath.Dir(logFile): 0o700 | os.ModeDir,
		layout.RunDir(opts.RunDir).Worker(id): 0o700 | os.ModeDir, layout.RunDir(opts.RunDir).Workers(): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
		}
	}
}

// TestWorkerNotReadyIsStopped: a worker that never says it is ready, or
// says so but never answers on its API socket, fails the mount once the
// ready timeout has passed, with the last fault seen, and is stopped.
func TestWorkerNotReadyIsStopped(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		timeout      time.Duration
		want         string
	}{
		{"silent", `exec -a "fake $2" sleep 60`, 500 * time.Millisecond, "not ready after 500ms"},
		// Time for bash to start on a loaded machine and say it is ready.
		{"ready but no API", `printf x >&3; exec -a "fake $2" sleep 60`, 2 * time.Second, "api.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := workerConfigOptions(t)
			opts.Binary = fakeBinary(t, tc.script)
			opts.ReadyTimeout = tc.timeout
			s := newFakeSupervisor(t, opts)
			err := mountFake(t, s, "v1")
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not ready after "+tc.timeout.String()) ||
				!strings.Contains(err.Error(), tc.want) {
				t.Errorf("Mount: %v; want not ready after %v, deadline exceeded, naming %q", err, tc.timeout, tc.want)
			}
			noWorkerLeft(t, opts.RunDir)
		})
	}
}

// TestWorkerLogsRotate: each worker's log rotates at max_size_mb, keeps
// max_backups rotated files, compressed, and removes those older than
// max_age_days.
func TestWorkerLogsRotate(t *testing.T) {
	opts := workerConfigOptions(t)
	opts.Logs = LogRotation{MaxSizeMB: 1, MaxBackups: 2, MaxAgeDays: 1, Compress: true}
	probe := &Supervisor{opts: opts}
	many, one := probe.workerID(fakeLayer("many")), probe.workerID(fakeLayer("one"))
	// many writes 3.5 MiB: three rotations, two kept. one writes 1.5 MiB:
	// one rotation, and its backup from long ago goes for its age.
	opts.Binary = fakeBinary(t, `n=1572864; [ "$4" = "`+many+`" ] && n=3670016
head -c $n /dev/zero | tr '\0' x >&2; exit 1`)
	daemons := layout.LogDir(opts.LogDir).Daemons()
	if err := os.MkdirAll(daemons, 0o700); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(daemons, one+"-2000-01-01T00-00-00.000.log.gz")
	if err := os.WriteFile(old, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newFakeSupervisor(t, opts)
	mountFake(t, s, "many")
	mountFake(t, s, "one")

	backups := func(id string) (gz, plain int) {
		ents, _ := os.ReadDir(daemons)
		for _, ent := range ents {
			name := ent.Name()
			switch {
			case !strings.HasPrefix(name, id+"-"):
			case strings.HasSuffix(name, ".log.gz"):
				gz++
			case strings.HasSuffix(name, ".log"):
				plain++
			}
		}
		return gz, plain
	}
	eventually(t, "3.5 MiB leave two compressed backups", func() bool {
		gz, plain := backups(many)
		return gz == 2 && plain == 0
	})
	eventually(t, "1.5 MiB leave one compressed backup, the old one removed", func() bool {
		gz, plain := backups(one)
		_, err := os.Stat(old)
		return gz == 1 && plain == 0 && errors.Is(err, os.ErrNotExist)
	})
	for _, id := range []string{many, one} {
		fi, err := os.Stat(layout.LogDir(opts.LogDir).WorkerLog(id))
		if err != nil || fi.Size() > 1<<20 {
			t.Errorf("%s's current log: %v, %v; want at most 1 MiB", id, fi, err)
		}
	}
}
